"""Fast-path switches (diamond.loop.perf) against the plain path on CPU: bf16 within bf16 tolerance, channels-last and
compile within float tolerance, the CUDA-graph buffer protocol and the on-device replay exactly; training still
converges with the switches on; a run with them is identical to the plain run where the switch changes no maths."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

from diamond.loop.agent import Learner, build_agent
from diamond.loop.config import build_config
from diamond.loop.data import Episode, ReplayBuffer, sample_segments
from diamond.loop.perf import (
    CapturedImaginationStep,
    DeviceReplay,
    StaticGraph,
    apply_module_switches,
    imagination_step,
)
from diamond.models.world_model import imagine, world_model_step
from diamond.run.io import read_jsonl
from diamond.train import run

# Tinier than `smoke`, for CPU speed; 32x32 frames.
TINY_NETS = ["env.size=32", "denoiser.channels=[8,8,8]", "denoiser.depths=[1,1,1]", "reward_end.channels=[8,8,8]",
             "reward_end.depths=[1,1,1]", "actor_critic.channels=[8,8,8]", "actor_critic.depths=[1,1,1]",
             "training.imagination_horizon=3"]


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def _random_agent(overrides: list[str] | None = None):
    """A tiny agent whose zero-initialised layers are randomised, so that outputs are not trivially 0."""
    torch.manual_seed(0)
    cfg = build_config("smoke", TINY_NETS + (overrides or []))
    agent = build_agent(cfg, num_actions=4)
    with torch.no_grad():
        for p in agent.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return cfg, agent


def _inputs(b: int = 3, size: int = 32, seed: int = 1) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    obs = torch.rand(b, 4, 3, size, size, generator=g) * 2 - 1
    act = torch.randint(0, 4, (b, 4), generator=g)
    x = torch.randn(b, 3, size, size, generator=g)
    c_noise = torch.randn(b, generator=g)
    return obs, act, x, c_noise


def _outputs(agent, obs, act, x, c_noise) -> list[torch.Tensor]:
    """Every network once, plus the denoiser loss on fixed noise draws."""
    with torch.random.fork_rng():
        torch.manual_seed(7)
        loss = agent.world_model.loss(torch.cat([obs, obs[:, -2:]], 1), torch.cat([act, act[:, -2:]], 1),
                                      torch.ones(obs.shape[0], 6, dtype=torch.bool))
    rew, end, _ = agent.reward_end(obs[:, :-1], act[:, :-1], obs[:, 1:])
    logits, value, _ = agent.actor_critic(obs[:, 0])
    return [agent.world_model.net(x, c_noise, obs, act), loss, rew, end, logits, value]


def _assert_close(fast: list[torch.Tensor], plain: list[torch.Tensor], rtol: float) -> None:
    for f, p in zip(fast, plain):
        err = (f.float() - p).abs().max().item()
        assert err <= rtol * max(p.abs().max().item(), 1e-3), (err, p.abs().max().item())


def test_bf16_autocast_agrees_with_fp32_within_bf16_tolerance() -> None:
    _, agent = _random_agent()
    inputs = _inputs()
    plain = _outputs(agent, *inputs)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fast = _outputs(agent, *inputs)
    assert fast[0].dtype == torch.bfloat16  # autocast really ran the convolutions in bf16
    _assert_close(fast, plain, rtol=5e-2)
    assert abs(fast[1].item() - plain[1].item()) < 2e-2 * plain[1].item()  # the denoiser loss
    # Sampling under autocast keeps a float32 state and frames on the 8-bit grid, close to the fp32 samples.
    obs, act = inputs[:2]
    with torch.random.fork_rng():
        torch.manual_seed(3)
        ref = agent.world_model.predict_next(obs, act)
    with torch.random.fork_rng(), torch.autocast("cpu", dtype=torch.bfloat16):
        torch.manual_seed(3)
        low = agent.world_model.predict_next(obs, act)
    levels = (low + 1) * 127.5
    assert low.dtype == torch.float32 and (levels - levels.round()).abs().max().item() < 1e-3
    assert (low - ref).abs().mean().item() < 0.05


def test_channels_last_agrees_with_plain_to_float_tolerance() -> None:
    cfg, agent = _random_agent(["perf.channels_last=true"])
    fast_agent = apply_module_switches(copy.deepcopy(agent), cfg.perf)
    conv = fast_agent.world_model.net.conv_in.weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    inputs = _inputs()
    _assert_close(_outputs(fast_agent, *inputs), _outputs(agent, *inputs), rtol=1e-5)


@pytest.mark.slow  # compiling three networks with inductor takes minutes on a 2-core CPU
def test_compile_agrees_with_plain_to_float_tolerance() -> None:
    cfg, agent = _random_agent(["perf.compile=true"])
    fast_agent = apply_module_switches(copy.deepcopy(agent), cfg.perf)
    assert list(fast_agent.state_dict()) == list(agent.state_dict())  # checkpoints unaffected
    inputs = _inputs()
    _assert_close(_outputs(fast_agent, *inputs), _outputs(agent, *inputs), rtol=1e-4)


def test_static_graph_buffer_protocol() -> None:
    """One capture per input signature; outputs are clones that a later call cannot overwrite."""
    calls = []

    def fn(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, ...]:
        calls.append(a.shape)
        return a * 2 + b, (a @ b.T)

    graph = StaticGraph(fn, "a test function")
    a, b = torch.randn(2, 3), torch.randn(2, 3)
    first = graph(a, b)
    assert torch.equal(first[0], a * 2 + b) and torch.equal(first[1], a @ b.T)
    second = graph(a + 1, b)
    assert torch.equal(first[0], a * 2 + b)  # not aliased to the output buffers
    assert torch.equal(second[0], (a + 1) * 2 + b) and len(graph.captures) == 1
    graph(torch.randn(4, 3), torch.randn(4, 3))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        graph(a, b)
    assert len(graph.captures) == 3 and len(calls) == 4
    with pytest.raises(ValueError, match="warmup_iters"):
        StaticGraph(fn, "a test function", warmup_iters=0)


def test_captured_imagination_is_the_plain_imagination() -> None:
    cfg, agent = _random_agent(["perf.cuda_graphs=true"])
    step = imagination_step(agent, cfg.perf)
    assert isinstance(step, CapturedImaginationStep)
    assert imagination_step(agent, build_config("smoke").perf) is None
    obs, act = _inputs(b=4)[:2]
    trajs = []
    for s in (None, step, step):  # the second captured call replays the existing capture
        torch.manual_seed(5)
        trajs.append(imagine(agent.actor_critic, agent.world_model, agent.reward_end, obs, act, horizon=4, step=s))
    for other in trajs[1:]:
        for name in ("obs", "actions", "logits", "values", "rewards", "ends", "valid"):
            assert torch.equal(getattr(other, name), getattr(trajs[0], name)), name
    # No burn-in state (L = 1 context): explicit zeros are what the LSTM assumes for None.
    torch.manual_seed(6)
    ref = world_model_step(agent.world_model, agent.reward_end, obs, act, None)
    torch.manual_seed(6)
    got = step(obs, act, None)
    assert all(torch.equal(x, y) for x, y in zip((*got[:3], *got[3]), (*ref[:3], *ref[3])))


def _episode(rng: np.random.Generator, steps: int, done: bool) -> Episode:
    obs = rng.integers(0, 256, (steps + 1, 3, 4, 4), dtype=np.uint8)
    end = np.zeros(steps, bool)
    end[-1] = done
    return Episode.from_arrays(obs, rng.integers(0, 4, steps), rng.choice([-1.0, 0.0, 1.0], steps).astype(np.float32),
                               end, np.zeros(steps, bool))


def _same_segments(device_replay: DeviceReplay, buffer: ReplayBuffer, seed: int) -> None:
    for pad, seq_len in (("left", 6), ("left", 1), ("both", 9)):
        fast = device_replay.sample(5, seq_len, np.random.default_rng(seed), pad=pad)
        plain = sample_segments(buffer, 5, seq_len, np.random.default_rng(seed), pad=pad).to_torch()
        for name in ("obs", "act", "rew", "end", "mask", "trans_mask"):
            assert torch.equal(getattr(fast, name), getattr(plain, name)), (pad, name)


def test_device_replay_gives_exactly_the_plain_batches() -> None:
    rng = np.random.default_rng(0)
    buffer = ReplayBuffer()
    for steps in (3, 12, 7):
        buffer.add_episode(_episode(rng, steps, done=True))
    buffer.start_episode(rng.integers(0, 256, (3, 4, 4), dtype=np.uint8))  # an open episode that keeps growing
    for _ in range(5):
        buffer.add_step(1, 1.0, False, False, rng.integers(0, 256, (3, 4, 4), dtype=np.uint8))
    device_replay = DeviceReplay(buffer, "cpu", capacity=4)  # grows several times
    _same_segments(device_replay, buffer, seed=1)
    assert device_replay.num_frames == buffer.num_steps + buffer.num_episodes
    for _ in range(6):  # the open episode grows, ends, and a new one arrives: sync uploads only what is new
        buffer.add_step(2, 0.0, False, False, rng.integers(0, 256, (3, 4, 4), dtype=np.uint8))
    buffer.add_step(0, 0.0, True, False, rng.integers(0, 256, (3, 4, 4), dtype=np.uint8))
    buffer.add_episode(_episode(rng, 9, done=False))
    _same_segments(device_replay, buffer, seed=2)
    assert device_replay.num_frames == buffer.num_steps + buffer.num_episodes
    buffer.truncate(10)
    with pytest.raises(ValueError, match="shrank"):
        device_replay.sync()


def test_fast_switches_still_converge_on_a_tiny_overfit() -> None:
    """bf16 + channels-last + fused AdamW + graphs: the denoiser overfits a fixed batch, the other learners step."""
    torch.manual_seed(0)
    cfg = build_config("smoke", TINY_NETS + ["perf.bf16=true", "perf.channels_last=true", "perf.fused_adamw=true",
                                             "perf.cuda_graphs=true", "denoiser_optim.lr=0.003",
                                             "denoiser_optim.warmup_steps=1", "diffusion.train_chain=1"])
    agent = build_agent(cfg, num_actions=4)
    learner = Learner(apply_module_switches(agent, cfg.perf), cfg)
    g = torch.Generator().manual_seed(2)
    blobs = torch.nn.functional.interpolate(torch.rand(4, 3, 4, 4, generator=g) * 2 - 1, size=32, mode="nearest")
    obs = blobs[:, None].expand(4, 5, 3, 32, 32).contiguous()  # a static world: the next frame is the last one
    act = torch.randint(0, 4, (4, 5), generator=g)
    mask = torch.ones(4, 5, dtype=torch.bool)

    def fixed_loss() -> float:
        with torch.random.fork_rng(), torch.no_grad():
            torch.manual_seed(11)
            return float(np.mean([agent.world_model.loss(obs, act, mask).item() for _ in range(4)]))

    before = fixed_loss()
    for _ in range(40):
        info = learner.update_denoiser(obs, act, mask)
    after = fixed_loss()
    assert np.isfinite(info["denoiser/loss"]) and after < before / 3, (before, after)
    ac = learner.update_actor_critic(obs[:, :4], act[:, :4])
    assert np.isfinite(ac["actor_critic/loss_value"]) and len(learner.imagine_step.graph.captures) == 1


def test_run_with_exact_switches_equals_the_plain_run(tmp_path) -> None:
    """On CPU, replay-on-device and the graph protocol change no maths: every logged number is the plain run's."""
    schedule = ["training.epochs=2", "training.total_env_steps=230", "training.initial_collect_steps=200",
                "training.initial_collect_max_steps=200", "training.collect_steps_per_epoch=30",
                "training.first_epoch_denoiser_steps=2", "training.first_epoch_reward_end_steps=2",
                "training.first_epoch_actor_critic_steps=1", "training.denoiser_steps=1", "training.reward_end_steps=1",
                "training.actor_critic_steps=1", "training.eval_episodes=1", "training.eval_num_envs=1",
                "env.eval_max_episode_frames=400"] + TINY_NETS
    plain = run(tmp_path / "plain", "Breakout", seed=3, profile="smoke", overrides=schedule)
    fast = run(tmp_path / "fast", "Breakout", seed=3, profile="smoke",
               overrides=schedule + ["perf.replay_on_device=true", "perf.cuda_graphs=true"])
    timing = ("epoch_time_s", "wall_time_s")
    strip = [{k: v for k, v in m.items() if k not in timing} for m in read_jsonl(tmp_path / "plain" / "metrics.jsonl")]
    fast_strip = [{k: v for k, v in m.items() if k not in timing} for m in read_jsonl(tmp_path / "fast" / "metrics.jsonl")]
    assert fast_strip == strip and len(strip) == 3
    assert fast["episode_returns"] == plain["episode_returns"]


# ------------------------------------------------------------------------------------------- benchmark


def test_schedule_follows_the_trainer() -> None:
    from diamond.loop.trainer import schedule

    counts = schedule(build_config("paper"), eval_episode_steps=2000)
    assert counts["denoiser_update"] == counts["sample_denoiser"] == 10_000 + 999 * 400
    assert counts["reward_end_update"] == 10_000 + 999 * 400 and counts["actor_critic_update"] == 5_000 + 999 * 400
    assert counts["collect_uniform"] == 5_000 and counts["collect_policy"] == 95_000  # 950 epochs of 100 steps
    assert counts["checkpoint"] == 1000 and counts["eval_step"] == 100 * 2000
    every = schedule(build_config("paper", ["training.eval_every=100", "training.epochs=450", "training.final_epochs=null"]),
                     eval_episode_steps=10)
    assert every["eval_step"] == (100 + 4 * 10) * 10  # epochs 100..400 evaluate 10 episodes, then the final 100
    assert every["collect_policy"] == 449 * 100
    released = schedule(build_config("paper", ["training.initial_collect_steps=5500"]), eval_episode_steps=10)
    assert released["checkpoint"] == 995 and released["collect_policy"] == 94_500  # every one of 945 epochs collects


def test_projection_is_count_times_seconds_per_unit() -> None:
    from diamond.bench.measure import Row, project

    rows = [Row("denoiser_update", "steps", 2.0, 1, scale=4.0), Row("eval_step", "env steps", 0.8, 8)]
    assert project(rows, {"denoiser_update": 10, "eval_step": 80, "checkpoint": 3}) == {
        "denoiser_update": 80.0, "eval_step": 8.0}


def test_flop_counts_are_per_sample_and_add_up() -> None:
    from torch.utils.flop_counter import FlopCounterMode

    from diamond.bench.measure import count_flops

    cfg = build_config("smoke", TINY_NETS)
    flops = count_flops(cfg, n_actions=4)
    assert flops["imagined_frame"] == flops["denoiser_passes"] + flops["reward_end_step"] + flops["actor_step"]
    _, agent = _random_agent()
    obs, act, x, c_noise = _inputs(b=2)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        agent.world_model.net(x, c_noise, obs, act)
    assert flops["denoiser_passes"] == cfg.diffusion.num_steps * counter.get_total_flops() // 2  # batch 2 -> 1
    # an update does forward + backward of train_chain predictions: about 3 forward passes each
    ratio = flops["denoiser_update"] / (cfg.diffusion.train_chain * flops["denoiser_passes"] / cfg.diffusion.num_steps)
    assert 2.5 < ratio <= 3.0, ratio


def test_bench_cli_writes_json_and_markdown(tmp_path, monkeypatch) -> None:
    from diamond import bench
    from diamond.bench import ladder as ladder_module

    args = ["--profile", "smoke", "--batch-size", "2", "--warmup", "0", "--repeats", "1", "--collect-steps", "20",
            "--eval-episode-steps", "50", "--out", str(tmp_path), *TINY_NETS]
    assert bench.main(args) == 0
    report = json.loads((tmp_path / "bench.json").read_text())
    rows = {r["name"]: r for r in report["rows"]}
    assert set(rows) == {"sample_denoiser", "sample_reward_end", "sample_actor_critic", "denoiser_update",
                         "reward_end_update", "actor_critic_update", "imagination", "collect_uniform",
                         "collect_policy", "eval_step", "checkpoint"}
    assert rows["denoiser_update"]["scale"] == 2.0 and rows["collect_policy"]["scale"] == 1.0  # smoke batch 4 from 2
    assert rows["imagination"]["items"] == 4 * 3 and all(r["rate"] > 0 for r in rows.values())
    assert rows["actor_critic_update"]["flops"] == 4 * report["flops_per_sample"]["actor_critic_update"]
    proj = report["projection"]
    assert proj["total_s"] == pytest.approx(sum(proj["seconds"].values())) and proj["counts"]["eval_step"] == 2 * 50
    text = (tmp_path / "bench.md").read_text()
    assert "| denoiser_update |" in text and "extrapolated" in text and report["peak_flops"] > 0
    monkeypatch.setattr(ladder_module, "LADDER", (("plain", None), ("+bf16", "perf.bf16"), ("+cuda_graphs", "perf.cuda_graphs")))
    assert bench.main(args + ["--ladder"]) == 0
    ladder = json.loads((tmp_path / "ladder.json").read_text())["ladder"]
    assert [r["config"] for r in ladder] == ["plain", "+bf16", "+cuda_graphs"]
    assert "| +cuda_graphs |" in (tmp_path / "ladder.md").read_text()
    assert bench.main(args[:-len(TINY_NETS)] + ["--repeats", "0"]) == 2
