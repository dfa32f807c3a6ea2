"""The one door for world models (diamond/models/registry.py): an out-of-tree model runs a static study and a `smoke`
agent run with no edit to the repository; the built-in model goes through the same door; bad factories are one
sentence; the recurrent-memory model (diamond/models/recurrent_wm.py) carries its state through every rollout."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest
import torch

from ablations import static_wm
from diamond.loop.agent import build_agent
from diamond.loop.config import ConfigError, build_config
from diamond.models import registry
from diamond.models.world_model import WorldModel, imagine
from diamond.train import main, run
from evaluation.wm_protocol import generate
from tests.test_static_wm import PROTOCOL, write_dataset
from tests.test_static_wm import TINY as STATIC_TINY
from tests.test_trainer import TINY as AGENT_TINY

torch.set_num_threads(1)

# A complete world model in one file, written outside the source tree: it predicts the last frame plus a learned
# offset, and carries a memory (how many frames left its window) so that the stateful path is exercised too.
PLUGIN = textwrap.dedent('''
    import torch
    from torch import nn

    class OffsetModel(nn.Module):
        def __init__(self, num_history, train_chain):
            super().__init__()
            self.num_history, self.segment_length = num_history, num_history + train_chain
            self.num_steps, self.sampler, self.nfe = 1, "offset", 1
            self.offset = nn.Parameter(torch.zeros(3))
            self.states_seen = []

        def loss(self, obs, act, mask):
            L = self.num_history
            pred = obs[:, L - 1 : -1] + self.offset.view(1, 1, 3, 1, 1)
            return ((pred - obs[:, L:]) ** 2).mean()

        def memory(self, obs, act, state=None):
            count = torch.zeros(obs.shape[0], 1) if state is None else state
            return count + obs.shape[1]

        def predict_next(self, obs_hist, act_hist, num_steps=None, generator=None, state=None):
            self.states_seen.append(None if state is None else state.clone())
            return (obs_hist[:, -1] + self.offset.view(1, 3, 1, 1)).clamp(-1, 1)

    def build(cfg, num_actions):
        return OffsetModel(cfg.diffusion.num_history, cfg.diffusion.train_chain)

    def not_a_model(cfg, num_actions):
        return nn.Linear(2, 2)
''')


@pytest.fixture
def plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The package `outside_wm` in a temporary folder on sys.path, also declaring the entry point `offset`."""
    root = tmp_path / "site"
    (root / "outside_wm").mkdir(parents=True)
    (root / "outside_wm" / "__init__.py").write_text(PLUGIN)
    dist = root / "outside_wm-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: outside-wm\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(f"[{registry.ENTRY_POINT_GROUP}]\noffset = outside_wm:build\n")
    monkeypatch.syspath_prepend(str(root))
    return "outside_wm:build"


def test_out_of_tree_model_runs_a_static_study(plugin: str, tmp_path: Path) -> None:
    data = tmp_path / "data"
    write_dataset(data)
    result = static_wm.run(tmp_path / "run", data, profile="smoke", overrides=[*STATIC_TINY,
                           f"world_model.factory={plugin}"], train_steps=4, protocol=PROTOCOL, checkpoint_every=2,
                           test_every=2, log_every=1)
    assert result["num_parameters"] == 3 and result["train_steps"] == 4
    assert set(result["rollouts"]["error_at"]) == {"n=1", "n=2", "copy last frame", "real continuation"}
    state = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)
    assert list(state["model"]) == ["offset"]  # the plug-in's own state dict is what the run checkpoints


def test_out_of_tree_model_runs_a_smoke_agent_run(plugin: str, tmp_path: Path) -> None:
    result = run(tmp_path / "agent", "Breakout", seed=0, profile="smoke",
                 overrides=[*AGENT_TINY, f"world_model.factory={plugin}"])
    assert result["nfe"] == 1 and result["epochs"] == 3


# A plug-in written against docs/plugins.md as it read before diamond/ was split into rooms (issue 32): every
# module path it imports has moved.
OLD_DOCS_PLUGIN = textwrap.dedent('''
    from diamond.config import Config
    from diamond.errors import ConfigError
    from diamond.registry import declarations
    from diamond.world_model import build_world_model, denoiser_settings

    def build(cfg: Config, num_actions):
        if cfg.world_model.options:
            raise ConfigError("old_wm takes no options")
        denoiser_settings(cfg)
        model = build_world_model(cfg, num_actions)
        assert declarations(model).offset_noise
        return model
''')


def test_a_plugin_written_against_the_earlier_docs_still_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "site"
    root.mkdir()
    (root / "old_wm.py").write_text(OLD_DOCS_PLUGIN)
    monkeypatch.syspath_prepend(str(root))
    for name in ("old_wm", "diamond.config", "diamond.errors", "diamond.registry", "diamond.world_model"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    with pytest.warns(DeprecationWarning, match=r"diamond\.world_model is now diamond\.models\.world_model"):
        result = run(tmp_path / "agent", "Breakout", seed=0, profile="smoke",
                     overrides=[*AGENT_TINY, "world_model.factory=old_wm:build"])
    assert result["epochs"] == 3
    from diamond.errors import ConfigError as moved

    assert moved is ConfigError  # the same class, so `except ConfigError` in old code still catches it


def test_entry_point_name_and_the_builtin_share_the_door(plugin: str, monkeypatch: pytest.MonkeyPatch) -> None:
    assert "offset" in registry.known_names()
    assert type(build_agent(build_config("smoke", ["world_model.factory=offset"]), 4).world_model).__name__ == \
        "OffsetModel"
    assert type(build_agent(build_config("smoke"), 4).world_model) is WorldModel
    # DIAMOND's model is only the registry's first entry: re-pointing the name re-points every trainer
    monkeypatch.setitem(registry.WORLD_MODELS, "diamond", plugin)
    assert type(build_agent(build_config("smoke"), 4).world_model).__name__ == "OffsetModel"


@pytest.mark.parametrize("spec, words", [
    ("no_such_model", "is not a registered world model"),
    ("no_such_package_xyz:build", "cannot be loaded (ModuleNotFoundError"),
    ("outside_wm:missing", "cannot be loaded (AttributeError"),
    ("os:sep", "not a callable"),
])
def test_bad_factory_is_one_sentence_naming_the_key(plugin: str, spec: str, words: str) -> None:
    with pytest.raises(ConfigError) as e:
        build_config("smoke", [f"world_model.factory={spec}"])
    message = str(e.value)
    assert message.startswith("config key 'world_model.factory'") and words in message and "\n" not in message


def test_a_factory_breaking_the_protocol_is_named(plugin: str) -> None:
    cfg = build_config("smoke", ["world_model.factory=outside_wm:not_a_model"])
    with pytest.raises(registry.WorldModelFactoryError, match="without num_history, segment_length, .*memory of "
                       "the world-model protocol"):
        registry.build_world_model(cfg, 4)


def test_cli_refuses_a_bad_factory_with_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["--game", "Breakout", "--profile", "smoke", "--out", str(tmp_path / "x"),
                 "world_model.factory=nope"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "world_model.factory" in err[0]


def test_rollouts_carry_a_plugin_memory(plugin: str) -> None:
    """Each rollout hands the model the state of every frame that left its window (1, 2, 3 ... frames)."""
    model = registry.build_world_model(build_config("smoke", [f"world_model.factory={plugin}"]), 4)
    model.states_seen.clear()  # the registry's probe at the door made one call
    context = torch.zeros(2, 4, 3, 8, 8, dtype=torch.uint8).numpy()
    generate(model, context, torch.zeros(2, 3 + 5, dtype=torch.long).numpy(), 1, None)
    assert [None if s is None else s[0, 0].item() for s in model.states_seen] == [None, 1, 2, 3, 4]


# --------------------------------------------------------------------------------- the recurrent model

def _recurrent(options: str = "{memory_frames: 3}") -> torch.nn.Module:
    torch.manual_seed(0)
    cfg = build_config("smoke", ["world_model.factory=recurrent", f"world_model.options={options}",
                                 "diffusion.train_chain=1"])
    return registry.build_world_model(cfg, 4)


def test_recurrent_model_learns_through_its_memory() -> None:
    """Once the zero-initialised output and residual convs have moved (two updates), the loss reaches the GRU
    through the AdaGN conditioning (R3) and back through time (R2)."""
    model = _recurrent()
    assert model.segment_length == 3 + 4 + 1
    obs, act = torch.rand(2, 8, 3, 64, 64) * 2 - 1, torch.randint(0, 4, (2, 8))
    mask = torch.ones(2, 8, dtype=torch.bool)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(3):
        opt.zero_grad()
        model.loss(obs, act, mask).backward()
        opt.step()
    assert model.frame_memory.cell.weight_ih.grad.abs().sum() > 0
    assert model.frame_memory.encoder[0].weight.grad.abs().sum() > 0


def test_recurrent_prediction_depends_on_frames_that_left_the_window() -> None:
    model = _recurrent().eval()
    torch.nn.init.normal_(model.net.conv_out.weight, std=0.5)  # a fresh net's output is 0 whatever it sees
    for block in model.net.modules():
        if isinstance(block, torch.nn.Conv2d) and block.weight.abs().sum() == 0:
            torch.nn.init.normal_(block.weight, std=0.2)
    window, act = torch.zeros(1, 4, 3, 64, 64), torch.zeros(1, 4, dtype=torch.long)
    early_a, early_b = -torch.ones(1, 3, 3, 64, 64), torch.ones(1, 3, 3, 64, 64)
    old = torch.zeros(1, 3, dtype=torch.long)
    pred = [model.predict_next(window, act, generator=torch.Generator().manual_seed(0),
                               state=model.memory(early, old)) for early in (early_a, early_b)]
    assert (pred[0] - pred[1]).abs().max() > 1e-4
    assert torch.equal(model.memory(early_a[:, :0], old[:, :0]), torch.zeros(1, 64))  # fresh state: zeros


def test_imagination_feeds_and_refills_the_recurrent_memory() -> None:
    """imagine folds each frame leaving the window into the memory and resets the rows it refills."""
    model = _recurrent()
    seen: list[torch.Tensor | None] = []
    original = model.predict_next

    def spy(*args, state=None, **kwargs):
        seen.append(None if state is None else state.clone())
        return original(*args, state=state, **kwargs)

    model.predict_next = spy
    cfg = build_config("smoke", ["world_model.factory=recurrent", "diffusion.train_chain=1"])
    agent = build_agent(cfg, 4)
    obs, act = torch.rand(2, 4, 3, 64, 64) * 2 - 1, torch.zeros(2, 4, dtype=torch.long)
    calls = {"n": 0}

    class EndsFirstRow(torch.nn.Module):
        def forward(self, o, a, n, state=None):
            calls["n"] += 1
            b, t = a.shape
            end_logits = torch.tensor([30.0, -30.0]).repeat(b, t, 1)  # no termination
            if calls["n"] == 2:  # call 1 burns in; call 2 scores the first imagined step: row 0 terminates
                end_logits[0] = torch.tensor([-30.0, 30.0])
            return torch.zeros(b, t, 3), end_logits, (torch.zeros(b, 1), torch.zeros(b, 1))

    imagine(agent.actor_critic, model, EndsFirstRow(), obs, act, 3,
            refill=lambda n: (torch.rand(n, 4, 3, 64, 64), torch.zeros(n, 4, dtype=torch.long)))
    assert seen[0] is None and seen[1] is not None and seen[2] is not None
    expected = model.memory(obs[1:, :1], act[1:, :1])  # row 1 kept its window's first frame
    torch.testing.assert_close(seen[1][1:], expected)
    assert seen[1][0].abs().sum() == 0  # row 0 restarted: nothing left its new window yet
