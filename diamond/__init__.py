"""DIAMOND: an RL agent trained in a diffusion world model (Alonso et al., NeurIPS 2024).

The top of the package holds the programs (`python -m diamond.train | evaluate | play | bench`); below them three
rooms, imports pointing down only: `loop` (the agent's loop and its config) → `models` (world models and their
parts) → `run` (errors, files, the run folder). shared/DESIGN.md, "Rooms inside diamond/".
"""

import importlib
import importlib.abc
import importlib.util
import sys
import warnings
from types import ModuleType

__version__ = "0.1.0"

# The module paths docs/plugins.md told plug-in authors to import before the split into rooms.
MOVED = {"diamond.config": "diamond.loop.config", "diamond.errors": "diamond.run.errors",
         "diamond.world_model": "diamond.models.world_model", "diamond.registry": "diamond.models.registry"}


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """An import of a MOVED path warns and gives a module that forwards every name to the new home, so a plug-in
    written against the earlier docs keeps running (the new module itself is left untouched)."""

    def find_spec(self, name: str, path: object = None, target: object = None) -> importlib.machinery.ModuleSpec | None:
        return importlib.util.spec_from_loader(name, self) if name in MOVED else None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> None:
        return None

    def exec_module(self, module: ModuleType) -> None:
        new = MOVED[module.__name__]
        warnings.warn(f"{module.__name__} is now {new}; import it from there", DeprecationWarning, stacklevel=2)
        home = importlib.import_module(new)
        module.__getattr__ = lambda name: getattr(home, name)  # type: ignore[method-assign]
        module.__all__ = [n for n in vars(home) if not n.startswith("_")]


sys.meta_path.append(_MovedModules())
