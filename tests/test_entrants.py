"""World models as named entrants (issue 29 items 1-2): what a model declares, --models and --only-models, arms left
out with a reason, and an out-of-tree model written only for this test as an extra arm of the Figure 3, memory and
atari100k suites, each report naming it."""

from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path

import pandas as pd
import pytest
import torch

import run_suite
from ablations import atari100k, conditioning, ddpm_vs_edm, entrants, memory, nfe, sampler
from ablations.entrants import parse_models
from ablations.registry import SuiteOptions, get_suite
from diamond.loop.config import build_config
from diamond.models import registry
from slurm.launcher import launch
from tests.test_ablation_suites import AGENT_TINY as SUITE_TINY
from tests.test_ablation_suites import tiny_schedules  # noqa: F401 - a fixture
from tests.test_ddpm_vs_edm_suite import TINY
from tests.test_trainer import TINY as AGENT_TINY

torch.set_num_threads(1)

# A world model that declares nothing: no paradigm, no offset noise, no chained training, its own sampler only.
PLAIN_WM = textwrap.dedent('''
    import torch
    from torch import nn

    class Shift(nn.Module):
        def __init__(self, num_history):
            super().__init__()
            self.num_history, self.segment_length = num_history, num_history + 1
            self.num_steps, self.sampler, self.nfe = 1, "shift", 1
            self.offset = nn.Parameter(torch.zeros(3))

        def loss(self, obs, act, mask):
            L = self.num_history
            return ((obs[:, L - 1] + self.offset.view(1, 3, 1, 1) - obs[:, L]) ** 2).mean()

        def memory(self, obs, act, state=None):
            return None

        def predict_next(self, obs_hist, act_hist, num_steps=None, generator=None, state=None):
            return (obs_hist[:, -1] + self.offset.view(1, 3, 1, 1)).clamp(-1, 1)

    def build(cfg, num_actions):
        return Shift(cfg.diffusion.num_history)

    def build_declared(cfg, num_actions):
        model = Shift(cfg.diffusion.num_history)
        model.samplers, model.offset_noise, model.config_fields = ("shift", "still"), True, ("diffusion.num_history",)
        return model

    def build_euler_only(cfg, num_actions):
        model = Shift(cfg.diffusion.num_history)
        model.paradigms, model.samplers, model.chained_training = ("edm", "ddpm"), ("euler",), True
        return model

    def build_wrong(cfg, num_actions):
        model = Shift(cfg.diffusion.num_history)
        model.samplers = "shift"
        return model
''')


@pytest.fixture
def plain_wm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    root = tmp_path / "site"
    root.mkdir()
    (root / "plain_wm.py").write_text(PLAIN_WM)
    monkeypatch.syspath_prepend(str(root))
    entrants._declared.cache_clear()
    return "plain_wm:build"


def _opts(tmp_path: Path, models: str, **kwargs) -> SuiteOptions:
    return SuiteOptions(profile="smoke", out=tmp_path / "runs", report_root=tmp_path / "reports",
                        models=parse_models(models), **kwargs)


def test_declarations_default_as_documented_and_the_builtin_declares_everything(plain_wm: str) -> None:
    plain = entrants.declared(plain_wm, "{}", "smoke")
    assert plain == registry.Declarations(samplers=("shift",))
    declared = entrants.declared("plain_wm:build_declared", "{}", "smoke")
    assert declared.samplers == ("shift", "still") and declared.offset_noise and not declared.chained_training
    diamond = registry.declarations(registry.build_world_model(build_config("smoke"), 4))
    assert diamond.paradigms == ("edm", "ddpm") and diamond.offset_noise and diamond.chained_training
    assert "euler" in diamond.samplers and "denoiser.channels" in diamond.config_fields
    with pytest.raises(registry.WorldModelFactoryError, match=r"Shift.samplers must be a sequence of names"):
        entrants.declared("plain_wm:build_wrong", "{}", "smoke")


def test_models_flag_names_labels_and_options() -> None:
    models = parse_models("recurrent, rec12=recurrent{memory_frames: 12, memory_dim: 8},mine=pkg.wm:build")
    assert [(m.label, m.factory, m.options) for m in models] == [
        ("recurrent", "recurrent", "{}"), ("rec12", "recurrent", "{memory_frames: 12, memory_dim: 8}"),
        ("mine", "pkg.wm:build", "{}")]
    assert parse_models("pkg.wm:build")[0].key == "pkg.wm-build"
    for bad, words in (("a=x,a=y", "its own label"), ("x{a: [1}", "not a YAML mapping"), (",", "at least one")):
        with pytest.raises(ValueError, match=words):
            parse_models(bad)


@pytest.mark.parametrize("suite, argv, words", [
    ("ablation_memory", ["--only-models"], "--only-models needs --models"),
    ("ablation_memory", ["--models", "a=x,a=y"], "--models: each model needs its own label"),
    ("ablation_nfe", ["--models", "shift=tests._shift_wm:build", "--only-models"], "suite ablation_nfe: no model "
     "declares the reference arm's sampler euler: shift: it declares the samplers ['shift'], not euler, the "
     "reference arm's"),
])
def test_bad_models_flags_are_one_sentence_exit_2(tmp_path: Path, suite: str, argv: list[str], words: str,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    code = run_suite.main(["--suite", suite, "--profile", "smoke", "--dry-run", "--out", str(tmp_path), *argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and words in err[0], err


def test_figure3_leaves_out_the_arms_a_model_cannot_take_and_names_why(plain_wm: str, tmp_path: Path) -> None:
    opts = _opts(tmp_path, f"mine={plain_wm}", seeds=1)
    planned, skipped = ddpm_vs_edm.plan(opts)
    assert [p.label for p in planned] == ["diamond EDM", "diamond DDPM", "diamond EDM offset 0.3",
                                          "diamond EDM chained", "mine"]
    assert dict(skipped) == {
        "mine DDPM": "mine: it declares no diffusion paradigms (`paradigms`)",
        "mine EDM offset 0.3": "mine: it declares no offset noise (`offset_noise` is False): the arm would repeat "
                               "its first arm",
        "mine EDM chained": "mine: it declares no chained training (`chained_training` is False): the arm would "
                            "repeat its first arm"}
    names = [s.name for stage in ddpm_vs_edm.stages(opts) for s in stage]
    assert "wm-edm-Breakout-s0" in names and "wm-mine-edm-Breakout-s0" in names  # the own model's names are kept
    assert "decision-mine-edm-Breakout-s0" in names and "cause-mine-edm-Breakout-s0" not in names  # no paradigm
    only = [s.name for s in ddpm_vs_edm.stages(dataclasses.replace(opts, only_models=True))[1]]
    assert only == ["wm-mine-edm-Breakout-s0", "judges-Breakout"]


def test_an_arm_whose_sampler_the_model_does_not_declare_is_left_out(plain_wm: str, tmp_path: Path) -> None:
    planned, skipped = ddpm_vs_edm.plan(_opts(tmp_path, "eu=plain_wm:build_euler_only", only_models=True))
    assert [p.label for p in planned] == ["eu EDM", "eu EDM chained"]
    assert dict(skipped)["eu DDPM"] == "eu: under ddpm it declares the samplers ['euler'], not ddpm_ancestral"


def test_memory_and_atari100k_add_the_model_and_memory_refuses_a_factory_in_set(plain_wm: str,
                                                                                  tmp_path: Path) -> None:
    opts = _opts(tmp_path, f"mine={plain_wm}", seeds=1, games=("Breakout",))
    mem = [s for s in memory.stages(dataclasses.replace(opts, games=None))[1]]
    assert [s.name for s in mem][-1] == "wm-model-mine-s0"
    assert f"world_model.factory={plain_wm}" in mem[-1].kwargs["overrides"]
    with pytest.raises(ValueError, match=r"chooses the world model per arm; .* enter a model with --models"):
        memory.stages(dataclasses.replace(opts, games=None, overrides=("world_model.factory=recurrent",)))
    grid = atari100k.stages(dataclasses.replace(opts, controls=True))[0]
    assert [s.name for s in grid] == ["Breakout-s0", "Breakout-s0-reward-blind", "Breakout-s0-mine",
                                      "Breakout-s0-mine-reward-blind"]


def _run(opts: SuiteOptions, suite: str, tmp_path: Path) -> pd.DataFrame:
    s = get_suite(suite)
    for stage in s.stages(opts):
        outcome = launch(stage, "debug", log_dir=tmp_path / "logs", progress=False)
        assert outcome.ok, outcome.summary()
    md, _ = s.report(opts)
    return md.read_text()


def test_figure3_report_names_the_model_and_its_left_out_arms(plain_wm: str, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    tiny = dataclasses.replace(ddpm_vs_edm.PROFILE_SETTINGS["smoke"], num_frames=600, random_games=1, train_steps=2,
                               warmup_steps=1, checkpoint_every=2, horizon=10, num_steps=(1,), rollouts=2, clips=2,
                               long_steps=None, short_horizon=None)
    monkeypatch.setitem(ddpm_vs_edm.PROFILE_SETTINGS, "smoke", tiny)
    opts = _opts(tmp_path, f"mine={plain_wm}", seeds=1, only_models=True, overrides=TINY)
    text = _run(opts, ddpm_vs_edm.NAME, tmp_path)
    tables = opts.report_dir(ddpm_vs_edm.NAME) / "tables"
    assert set(pd.read_csv(tables / "short_horizon.csv")["arm"]) == {"mine", "copy last frame"}
    left_out = pd.read_csv(tables / "arms_left_out.csv")
    assert list(left_out["arm left out"]) == ["mine DDPM", "mine EDM offset 0.3", "mine EDM chained"]
    settings = pd.read_csv(tables / "settings.csv").set_index("setting")["mine"]
    assert settings["world model (factory)"] == plain_wm and settings["denoiser channels"] == "– (not read)"
    assert "Offset noise of the released agent" not in text and "it declares no offset noise" in text


def test_memory_and_atari100k_reports_name_the_model(plain_wm: str, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    opts = _opts(tmp_path / "memory", f"mine={plain_wm}", seeds=1, only_models=True)
    text = _run(opts, memory.NAME, tmp_path)
    models = pd.read_csv(opts.report_dir(memory.NAME) / "tables" / "models.csv")
    assert list(models["model"]) == ["mine s0"] and list(models["factory"]) == [plain_wm] and "mine" in text
    opts = _opts(tmp_path / "atari", f"mine={plain_wm}", seeds=1, games=("Breakout",), overrides=AGENT_TINY)
    monkeypatch.setenv("DIAMOND_REPORT_REPS", "5")
    _run(opts, atari100k.NAME, tmp_path)
    tables = opts.report_dir(atari100k.NAME) / "tables"
    assert {"diamond (ours)", "mine (ours)"} <= set(pd.read_csv(tables / "per_game.csv").columns)
    own = pd.read_csv(tables / "settings_per_model.csv").set_index("setting")
    assert own.loc["world model (factory)", "mine"] == plain_wm and own.loc["denoiser channels", "mine"] == \
        "– (not read)" and own.loc["denoiser channels", "diamond"] != "– (not read)"
    text = (opts.report_dir(atari100k.NAME) / "report.md").read_text()
    assert "different configurations" not in text
    # one learning check per world model, each named, each with its own tables
    assert "## Does the agent learn? (diamond)" in text and "## Does the agent learn? (mine)" in text
    assert "runs only" not in text
    for model in ("diamond", "mine"):
        assert list(pd.read_csv(tables / f"agent_vs_controls-{model}.csv")["game"]) == ["Breakout"]


def test_evaluate_names_the_factory_a_checkpoint_was_trained_with(tmp_path: Path) -> None:
    """diamond.evaluate on a recurrent model's checkpoint, built as diamond: the run's config.yaml names the factory
    to pass; without a run folder, the factory is named as the likely cause, not --profile."""
    from diamond.evaluate import CheckpointError, load_agent
    from diamond.loop.agent import build_agent
    from diamond.loop.config import to_dict
    from diamond.run.io import atomic_write_yaml

    trained = build_config("smoke", ["world_model.factory=recurrent"])
    run = tmp_path / "run"
    torch.save({"agent": build_agent(trained, 4).state_dict()}, tmp_path / "last.pt")
    with pytest.raises(CheckpointError, match=r"the world model that world_model.factory 'diamond' builds is not the "
                                              r"checkpoint's: pass the world_model.factory"):
        load_agent(tmp_path / "last.pt", build_config("smoke"), 4, official=False)
    (run / "checkpoints").mkdir(parents=True)
    (tmp_path / "last.pt").rename(run / "checkpoints" / "last.pt")
    atomic_write_yaml(run / "config.yaml", to_dict(trained))
    with pytest.raises(CheckpointError, match=r"trained with world_model.factory 'recurrent' .* pass "
                                              r"--set world_model.factory=recurrent"):
        load_agent(run / "checkpoints" / "last.pt", build_config("smoke"), 4, official=False)


@pytest.mark.parametrize("factory, menu", [("plain_wm:build", ["shift"]),
                                           ("plain_wm:build_declared", ["shift", "still"])])
def test_plays_sampler_menu_fills_from_the_declaration(plain_wm: str, factory: str, menu: list[str]) -> None:
    from diamond.loop.agent import build_agent
    from diamond.play.session import PlaySession

    cfg = build_config("smoke", [f"world_model.factory={factory}"])
    session = PlaySession(build_agent(cfg, 4), cfg, torch.device("cpu"))
    assert session.samplers == menu and session.sampler == "shift"
    session.configure(2, menu[-1])
    with pytest.raises(ValueError, match="is not one of"):
        session.configure(2, "euler")


def test_sampling_suites_run_each_arm_whose_sampler_a_model_declares(plain_wm: str, tmp_path: Path) -> None:
    opts = _opts(tmp_path, f"eu=plain_wm:build_euler_only,mine={plain_wm}", seeds=1, games=("Pong",))
    planned, skipped = sampler.GRID.plan(opts)
    assert [(p.entrant.label, [a.key for a in p.arms]) for p in planned] == [
        ("diamond", ["euler-n3", "heun-n2", "euler_ancestral-n10", "heun-n3"]), ("eu", ["euler-n3"])]
    why = dict(skipped)
    assert why["eu Heun n=2 (NFE 3)"] == "eu: it declares the samplers ['euler'], not heun"
    assert why["mine Euler n=3 (NFE 3)"] == "mine: it declares the samplers ['shift'], not euler, the reference arm's"
    assert len(skipped) == 3 + 4  # eu's three other samplers; every arm of mine, which lacks the reference's
    agents, trained, evals = sampler.GRID.stages(opts)
    assert [s.name for s in agents] == ["euler-n3-Pong-s0", "heun-n2-Pong-s0", "euler_ancestral-n10-Pong-s0",
                                        "heun-n3-Pong-s0", "eu-euler-n3-Pong-s0", "dataset-Breakout-expert"]
    assert "world_model.factory=plain_wm:build_euler_only" in agents[4].kwargs["overrides"]
    assert [s.name for s in trained] == ["wm-Breakout-expert", "wm-eu-Breakout-expert", "dataset-Pong-agent",
                                         "dataset-Pong-agent-eu"]
    assert trained[3].kwargs["agent_run_dir"].endswith("eu-euler-n3-Pong-s0")
    assert [s.name for s in evals] == ["eval-Breakout-expert", "eval-Pong-agent", "eval-eu-Breakout-expert",
                                       "eval-eu-Pong-agent"]
    assert [s["label"] for s in evals[3].kwargs["settings"]] == ["eu Euler n=3 (NFE 3)"]
    nfe_plan, nfe_skipped = nfe.GRID.plan(dataclasses.replace(opts, only_models=True))
    assert [len(p.arms) for p in nfe_plan] == [5] and len(nfe_skipped) == 5  # every n for eu, none for mine


def test_conditioning_adds_the_model_as_an_arm_on_the_frame_stack_window(plain_wm: str, tmp_path: Path) -> None:
    opts = _opts(tmp_path, f"mine={plain_wm}", seeds=1)
    _, models, evals = conditioning.stages(opts)
    assert [s.name for s in models] == ["wm-frame_stack-s0", "wm-cross_attention-s0", "wm-model-mine-s0",
                                        "judges-Breakout"]
    overrides = models[2].kwargs["overrides"]
    assert overrides[-2:] == [f"world_model.factory={plain_wm}", "world_model.options={}"]
    assert "diffusion.num_history=6" in overrides and "diffusion.history=frame_stack" in overrides
    (setting,) = next(s for s in evals if s.name == "eval-model-mine-s0").kwargs["settings"]
    assert setting["label"] == "mine" and setting["sampler"] == "shift"  # its own sampler, not the config's euler
    only = conditioning.stages(dataclasses.replace(opts, only_models=True))[1]
    assert [s.name for s in only] == ["wm-model-mine-s0", "judges-Breakout"]


@pytest.mark.usefixtures("tiny_schedules")
def test_sampler_and_conditioning_reports_name_the_model(plain_wm: str, tmp_path: Path) -> None:
    opts = _opts(tmp_path / "sampler", "eu=plain_wm:build_euler_only", seeds=1, games=("Pong",), only_models=True,
                 overrides=tuple(SUITE_TINY))
    text = _run(opts, sampler.NAME, tmp_path)
    tables = opts.report_dir(sampler.NAME) / "tables"
    assert list(pd.read_csv(tables / "agent_arms.csv")["arm"]) == ["eu Euler n=3 (NFE 3)"]
    assert list(pd.read_csv(tables / "wm_eval-eu-Pong-agent.csv")["arm"]) == ["eu Euler n=3 (NFE 3)"]
    left_out = pd.read_csv(tables / "arms_left_out.csv")
    assert list(left_out["arm left out"]) == ["eu Heun n=2 (NFE 3)", "eu Euler-ancestral n=10 (NFE 10)",
                                              "eu Heun n=3 (NFE 5)"]
    assert "World model on Pong (the reference agent's data)" in text  # one model: no name needed
    opts = _opts(tmp_path / "cond", f"mine={plain_wm}", seeds=1, overrides=("training.batch_size=2",))
    text = _run(opts, conditioning.NAME, tmp_path)
    table6 = pd.read_csv(opts.report_dir(conditioning.NAME) / "tables" / "table6.csv")
    assert list(table6["arm"]) == ["frame-stack s0", "cross-attention s0", "mine s0"]
    diff = pd.read_csv(opts.report_dir(conditioning.NAME) / "tables" / "differences_s0.csv")
    assert list(diff["arm"]) == ["cross-attention s0", "mine s0"] and "Each arm − frame-stack" in text
