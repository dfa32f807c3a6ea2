"""World models checked at the door (diamond/models/registry.py, issue 29): a factory with the wrong signature, a
plug-in that does not parse or raises at import, a builder refusing an option, and a model whose `loss` or
`predict_next` answers the wrong type are each one sentence with exit 2, before any run folder is claimed; the
corrected command then runs. The probe leaves torch's RNG streams and the models' modes as it found them."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import torch

from ablations import static_wm
from diamond.loop.agent import build_agent
from diamond.loop.config import ConfigError, build_config
from diamond.models import registry
from diamond.run.errors import RunIdentityError
from diamond.run.rundir import record_identity
from diamond.train import main
from tests.test_static_wm import PROTOCOL, write_dataset
from tests.test_static_wm import TINY as STATIC_TINY
from tests.test_trainer import TINY as AGENT_TINY

torch.set_num_threads(1)

# A plug-in whose option `bad` breaks one method: `loss` returns a float, or `predict_next` a tuple.
DOOR_WM = textwrap.dedent('''
    import torch
    from torch import nn

    class Toy(nn.Module):
        def __init__(self, num_history, bad):
            super().__init__()
            self.num_history, self.segment_length = num_history, num_history + 1
            self.num_steps, self.sampler, self.nfe, self.bad = 1, "toy", 1, bad
            self.offset = nn.Parameter(torch.zeros(3))

        def loss(self, obs, act, mask):
            loss = ((obs[:, -2] + self.offset.view(1, 3, 1, 1) - obs[:, -1]) ** 2).mean()
            return float(loss) if self.bad == "loss" else loss

        def memory(self, obs, act, state=None):
            return None

        def predict_next(self, obs_hist, act_hist, num_steps=None, generator=None, state=None):
            nxt = obs_hist[:, -1] + self.offset.view(1, 3, 1, 1)
            return (nxt, None) if self.bad == "predict_next" else nxt

    def build(cfg, num_actions):
        options = dict(cfg.world_model.options)
        unknown = sorted(set(options) - {"bad"})
        if unknown:
            raise ValueError(f"door_wm takes only the option bad, not {unknown}")
        return Toy(cfg.diffusion.num_history, options.get("bad"))
''')


@pytest.fixture
def plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """door_wm (above), door_syntax (does not parse) and door_raises (raises at import) on sys.path."""
    root = tmp_path / "site"
    root.mkdir()
    (root / "door_wm.py").write_text(DOOR_WM)
    (root / "door_syntax.py").write_text("def build(cfg, num_actions:\n    return None\n")
    (root / "door_raises.py").write_text("raise RuntimeError('door_raises needs a driver that is not here')\n")
    monkeypatch.syspath_prepend(str(root))


CASES = {  # the overrides of each refused command, and the words its one sentence holds
    "wrong signature": (["world_model.factory=os:getcwd"],
                        ["world_model.factory", "'os:getcwd'", "getcwd()", "factory(cfg, num_actions)"]),
    "syntax error": (["world_model.factory=door_syntax:build"],
                     ["world_model.factory", "'door_syntax:build'", "door_syntax.py line 1 is not valid Python"]),
    "raises at import": (["world_model.factory=door_raises:build"],
                         ["'door_raises:build'", "importing it raised RuntimeError: door_raises needs a driver"]),
    "builder refuses an option": (["world_model.factory=door_wm:build", "world_model.options={colour: 3}"],
                                  ["world_model.options {'colour': 3}", "'door_wm:build'",
                                   "ValueError: door_wm takes only the option bad, not ['colour']"]),
    "predict_next returns a tuple": (["world_model.factory=door_wm:build", "world_model.options={bad: predict_next}"],
                                     ["'door_wm:build'", "predict_next([1, 4, 3, 64, 64], [1, 4]) returned a tuple",
                                      "not the next frame, a floating-point Tensor [1, 3, 64, 64]"]),
    "loss returns a float": (["world_model.factory=door_wm:build", "world_model.options={bad: loss}"],
                             ["'door_wm:build'", "loss([1, 5, 3, 64, 64], [1, 5], [1, 5]) returned a float",
                              "not a scalar floating-point Tensor"]),
    "diamond takes no options": (["world_model.options={memory_frames: 3}"],
                                 ["world_model.options {'memory_frames': 3} do not apply to the diamond world model"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_refused_world_model_is_one_sentence_exit_2_and_claims_no_folder(
        plugins: None, case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    overrides, words = CASES[case]
    out = tmp_path / "run"
    assert main(["--game", "Breakout", "--profile", "smoke", "--out", str(out), *overrides]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    for w in words:
        assert w in err[0], (w, err[0])
    assert not out.exists(), "a refused configuration claims no run folder"


def test_the_corrected_command_runs_in_the_same_folder(plugins: None, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    args = ["--game", "Breakout", "--profile", "smoke", "--out", str(out), "world_model.factory=door_wm:build",
            *AGENT_TINY]
    assert main([*args, "world_model.options={bad: loss}"]) == 2
    assert main(args) == 0, capsys.readouterr().err
    assert (out / "result.json").is_file()


def test_a_static_study_refuses_before_it_records_the_folder(plugins: None, tmp_path: Path) -> None:
    write_dataset(tmp_path / "data")
    with pytest.raises(ConfigError, match=r"'door_wm:build' built Toy, whose predict_next\(.*\) returned a tuple"):
        static_wm.run(tmp_path / "run", tmp_path / "data", profile="smoke", protocol=PROTOCOL, train_steps=2,
                      overrides=[*STATIC_TINY, "world_model.factory=door_wm:build",
                                 "world_model.options={bad: predict_next}"])
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [".lock"], "no identity, no config.yaml"


def test_builder_errors_keep_their_message_at_the_registry(plugins: None) -> None:
    cfg = build_config("smoke", ["world_model.factory=door_wm:build", "world_model.options={colour: 3}"])
    with pytest.raises(ConfigError, match=r"world_model.options \{'colour': 3\} refused by world_model.factory "
                                          r"'door_wm:build' \(ValueError: door_wm takes only the option bad"):
        registry.build_world_model(cfg, 4)


def test_a_config_hash_mismatch_names_the_keys_that_differ(tmp_path: Path) -> None:
    """A run stopped before it wrote config.yaml: its claim recorded the config, so a refusal names the key."""
    identity = {"game": "Breakout", "seed": 0, "profile": "smoke", "config_hash": "abc"}
    record_identity(tmp_path, identity, {"world_model": {"factory": "diamond", "options": {}}})
    with pytest.raises(RunIdentityError, match=r"config differs in world_model.factory \('diamond' on disk, "
                                               r"'recurrent' requested\)"):
        record_identity(tmp_path, {**identity, "config_hash": "xyz"},
                        {"world_model": {"factory": "recurrent", "options": {}}})


def test_the_probe_changes_no_rng_stream_mode_or_weight(monkeypatch: pytest.MonkeyPatch) -> None:
    """An agent built with the door's probe is bit-identical to one built without it, and so is what follows."""
    cfg = build_config("smoke", ["world_model.factory=recurrent"])
    built = []
    for probe in (registry.probe_world_model, lambda *a: None):
        monkeypatch.setattr(registry, "probe_world_model", probe)
        torch.manual_seed(0)
        agent = build_agent(cfg, 4).eval()
        built.append((agent.state_dict(), torch.rand(4)))
    (with_probe, after_probe), (without, after) = built
    assert torch.equal(after_probe, after)
    assert all(torch.equal(with_probe[k], without[k]) for k in without)
    model = registry.build_world_model(cfg, 4).eval()
    registry.probe_world_model(model, "recurrent", cfg.env.size)
    assert not any(m.training for m in model.modules()), "eval mode is kept"
