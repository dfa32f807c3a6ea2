"""Building blocks of the "arm" ablations (sampler, NFE, history conditioning): agent arms as run grids, and
the reusable world-model benchmark step "evaluate this trained world model on this static dataset".

Two run entries live here, next to ablations.static_data (the scripted Breakout expert's dataset) and
ablations.static_wm (a world model trained on a static dataset):

- `collect_agent_dataset`: a static dataset played by a trained agent's checkpoint, on any game (the paper's
  §5.3 datasets are "100k frames collected with expert policies"), in the format static_wm reads.
- `evaluate_world_model`: the Table 6 protocol (App. J.3) on held-out real clips, for several sampling
  settings of one world model (a static_wm run or an agent run's own D_θ): FID, FVD, LPIPS, MSE and
  sharpness per clip, sampling rate and parameter count; every setting sees the same clips, the same noise
  and the same bootstrap resamples, so arms compare pairwise (evaluation.compare).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ablations.atari100k import check_finished
from ablations.breakout_expert import SUMMARY_FILE
from ablations.static_data import dataset_dir
from ablations.static_wm import load_dataset, split_episodes
from ablations.suite import SuiteOptions
from diamond.loop.agent import build_agent
from diamond.loop.config import Config, build_config, config_hash, from_dict
from diamond.loop.data import INDEX_FILE, ReplayBuffer, to_float
from diamond.loop.envs import make_env, num_actions
from diamond.loop.trainer import resolve_device
from diamond.models.diffusion.samplers import nfe
from diamond.models.registry import build_world_model
from diamond.models.world_model import WorldModel
from diamond.run.io import CorruptFileError, atomic_write, atomic_write_json, atomic_write_text, read_json, read_yaml
from evaluation.compare import clip_resamples, frechet_replicates
from evaluation.video import extract_features, frechet_distance, lpips_per_pair
from evaluation.wm_protocol import (
    COPY_SETTING,
    generate,
    join_life_losses,
    load_feature_networks,
    nfe_at,
    num_parameters,
    pick_starts,
    rollout_vs_real,
    using_sampler,
)
from slurm.launcher import RunSpec

CLIPS_FILE, ERRORS_FILE = "clips.npz", "rollout_errors.csv"
SAMPLER_NAMES = {"euler": "Euler", "heun": "Heun", "euler_maruyama": "Euler–Maruyama", "heun_churn": "Heun + churn",
                 "euler_ancestral": "Euler-ancestral"}
SAMPLING_KEYS = ("diffusion.sampler", "diffusion.num_steps")


@dataclass(frozen=True)
class SamplingArm:
    """One EDM sampling choice: a sampler and its number of denoising steps n (NFE follows from both)."""

    sampler: str
    num_steps: int

    @property
    def nfe(self) -> int:
        return nfe(self.sampler, self.num_steps)

    @property
    def key(self) -> str:
        return f"{self.sampler}-n{self.num_steps}"

    @property
    def label(self) -> str:
        return f"{SAMPLER_NAMES.get(self.sampler, self.sampler)} n={self.num_steps} (NFE {self.nfe})"

    @property
    def overrides(self) -> list[str]:
        return [f"diffusion.sampler={self.sampler}", f"diffusion.num_steps={self.num_steps}"]

    def setting(self) -> dict[str, Any]:
        """The JSON form `evaluate_world_model` takes."""
        return {"key": self.key, "label": self.label, "sampler": self.sampler, "num_steps": self.num_steps}


def reject_overrides(suite: str, overrides: Sequence[str], varied: Sequence[str]) -> None:
    """The keys a suite varies are its own: a --set of one of them would silently merge two arms."""
    clash = [o for o in overrides if o.partition("=")[0].strip() in varied]
    if clash:
        raise ValueError(f"suite {suite} sets {', '.join(varied)} itself; drop the override(s) {clash}.")


def check_evaluation(spec: RunSpec) -> None:
    """A finished evaluation counts only if it measured the model now in its model folder, at the settings asked."""
    path = spec.run_dir / "result.json"
    model_result = Path(spec.kwargs["model_dir"]) / "result.json"
    if not path.is_file() or not model_result.is_file():
        return
    done, model = read_json(path), read_json(model_result)
    asked = [s["key"] for s in spec.kwargs["settings"]]
    if done.get("model_config_hash") != model.get("config_hash") or [s["key"] for s in done["settings"]] != asked:
        raise ValueError(f"evaluation {spec.name} in {spec.run_dir} measured another model or other settings than "
                         f"{spec.kwargs['model_dir']} with {asked}; delete that folder to evaluate again")


def agent_run_name(key: str, game: str, seed: int) -> str:
    """`key`: the arm's key for the suite's own model, `<model>-<arm>` for an added one (SamplingPlan.key)."""
    return f"{key}-{game}-s{seed}"


def agent_specs(suite: str, opts: SuiteOptions, arms: Sequence[tuple[str, SamplingArm, Sequence[str]]],
                games: Sequence[str], seeds: int, gpu_hours: float) -> list[RunSpec]:
    """One `diamond.train:run` per (arm, game, seed): Algorithm 1 with the arm's sampler and n, all else equal.
    `arms`: (group key, arm, the model's overrides) in report order."""
    specs = []
    for key, arm, model in arms:
        for game in games:
            for seed in range(seeds):
                overrides = [*opts.overrides, *arm.overrides, *model]
                cfg = build_config(opts.profile, overrides, seed=seed, **{"env.game": game})
                name = agent_run_name(key, game, seed)
                spec = RunSpec(name=name, run_dir=opts.suite_dir(suite) / name, entry="diamond.train:run",
                               kwargs={"game": game, "seed": seed, "profile": opts.profile, "overrides": overrides},
                               gpu_hours=gpu_hours, group=key)
                check_finished(spec, cfg)
                specs.append(spec)
    return specs


# ------------------------------------------------------------------------------ trained models from run folders


def _load_state(run_dir: Path) -> tuple[Config, dict[str, Any], torch.device]:
    """config.yaml and checkpoints/last.pt of a *finished* run (a partial checkpoint is not the final model),
    loaded onto the device the run's config asks for."""
    if not (run_dir / "result.json").is_file():
        raise FileNotFoundError(f"{run_dir} has no result.json: the run is not finished, its checkpoint is not final.")
    cfg = from_dict(read_yaml(run_dir / "config.yaml"))
    device = resolve_device(cfg.perf.device)
    path = run_dir / "checkpoints" / "last.pt"
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure means a bad or missing file
        raise CorruptFileError(f"{path}: cannot load checkpoint ({e})") from e
    if state.get("config_hash") != config_hash(cfg):
        raise CorruptFileError(f"{path}: written by another config than {run_dir / 'config.yaml'}.")
    return cfg, state, device


def load_world_model(run_dir: str | Path) -> tuple[WorldModel, Config]:
    """D_θ of a finished static_wm run (state 'model') or agent run (state 'agent'), on the run's device."""
    run_dir = Path(run_dir)
    cfg, state, device = _load_state(run_dir)
    n_actions = num_actions(cfg.env.game)
    if "model" in state:
        model = build_world_model(cfg, n_actions)
        model.load_state_dict(state["model"])
    elif "agent" in state:
        agent = build_agent(cfg, n_actions)
        agent.load_state_dict(state["agent"])
        model = agent.world_model
    else:
        raise CorruptFileError(f"{run_dir / 'checkpoints' / 'last.pt'} holds neither a world model nor an agent.")
    return model.to(device).eval(), cfg


# ------------------------------------------------------------------------ a static dataset played by an agent


@torch.no_grad()
def collect_agent_dataset(run_dir: str | Path, agent_run_dir: str | Path, num_frames: int = 100_000, seed: int = 0,
                          epsilon: float = 0.0) -> dict[str, Any]:
    """Play a finished agent run's policy for `num_frames` steps in the training env (episodes end at life
    losses, as in the replay) into `<run_dir>/dataset/` (ReplayBuffer + summary.json), then result.json."""
    run_dir, agent_run_dir = Path(run_dir), Path(agent_run_dir)
    if (run_dir / "result.json").is_file():
        return read_json(run_dir / "result.json")
    if num_frames < 1 or not 0.0 <= epsilon <= 1.0:
        raise ValueError(f"need num_frames >= 1 and epsilon in [0, 1], got {num_frames} and {epsilon}.")
    cfg, state, device = _load_state(agent_run_dir)
    if "agent" not in state:
        raise ValueError(f"{agent_run_dir} is not an agent run (its checkpoint holds no agent); give a "
                         "diamond.train run folder.")
    n_actions = num_actions(cfg.env.game)
    agent = build_agent(cfg, n_actions)
    agent.load_state_dict(state["agent"])
    policy = agent.actor_critic.to(device).eval()
    out = dataset_dir(run_dir)
    for stale in [*out.glob("episode_*.npz"), out / INDEX_FILE]:  # leftovers of an interrupted collection
        stale.unlink(missing_ok=True)
    e = cfg.env
    env = make_env(e.game, train=True, seed=seed, size=e.size, frameskip=e.frameskip, noop_max=e.noop_max,
                   max_episode_frames=e.max_episode_frames, pool_first_frame=e.pool_first_frame)
    rng = np.random.default_rng(seed)
    buffer = ReplayBuffer(out)
    obs, lstm, new_episode = env.reset()[0], None, True
    returns, total = [], 0.0
    for _ in tqdm(range(num_frames), desc=f"{e.game} agent", unit="step"):
        if new_episode:  # the policy's memory restarts with every (life-loss) episode, as when it was trained
            buffer.start_episode(obs)
            lstm, new_episode = None, False
        logits, _, lstm = policy(to_float(torch.from_numpy(obs).to(device)[None]), lstm)
        probs = torch.softmax(logits[0].float(), -1).cpu().numpy().astype(np.float64)
        explore = rng.random() < epsilon
        action = int(rng.integers(n_actions)) if explore else int(rng.choice(n_actions, p=probs / probs.sum()))
        obs, reward, terminated, truncated, info = env.step(action)
        buffer.add_step(action, reward, terminated, truncated, obs)
        total += reward
        if terminated or truncated:
            if info["game_over"] or truncated:
                returns.append(total)
                total = 0.0
            obs, new_episode = env.reset()[0], True
    buffer.save()
    summary = {"game": e.game, "num_frames": num_frames, "seed": seed, "epsilon": epsilon, "policy": "agent",
               "agent_run_dir": str(agent_run_dir), "agent_config_hash": config_hash(cfg), "train_env": True,
               "num_steps": buffer.num_steps, "num_episodes": buffer.num_episodes, "num_full_games": len(returns),
               "agent_game_returns": returns, "agent_mean_return": float(np.mean(returns)) if returns else None}
    atomic_write_json(out / SUMMARY_FILE, summary)
    result = {**summary, "dataset_dir": str(out)}
    atomic_write_json(run_dir / "result.json", result)
    return result


# ------------------------------------------------------------------------------ the Table 6 protocol, per clip


@dataclass(frozen=True)
class ClipProtocol:
    """Table 6 (App. J.3): `clips` real clips of `clip_len` frames after `context` real frames (the model uses
    its last L) and the real actions; plus `rollouts` open-loop rollouts to `horizon` for error curves."""

    clips: int = 1024
    context: int = 6
    clip_len: int = 16
    keep: int = 4  # clips whose frames are saved for the report's image grids
    rollouts: int = 16
    horizon: int = 1000
    feature_networks: bool = True
    bootstrap_reps: int = 100  # resamples of clips; each FID replicate costs seconds at 16k frames x 2048 features
    batch_size: int = 128  # clips generated at once (cross-attention over L frames is memory-hungry)
    seed: int = 0

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> ClipProtocol:
        values = dict(values or {})
        unknown = sorted(set(values) - {f.name for f in fields(cls)})
        if unknown:
            valid = ", ".join(f.name for f in fields(cls))
            raise ValueError(f"unknown clip protocol setting(s) {unknown}; valid: {valid}")
        p = cls(**values)
        if (p.clips < 2 or p.clip_len < 1 or p.keep < 0 or p.rollouts < 0 or p.horizon < 1 or p.bootstrap_reps < 1
                or p.batch_size < 1):
            raise ValueError(f"clip protocol needs clips >= 2, clip_len >= 1, keep >= 0, rollouts >= 0, horizon >= 1, "
                             f"bootstrap_reps >= 1 and batch_size >= 1; got {p}")
        return p

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def sharpness(frames: np.ndarray) -> np.ndarray:
    """Mean squared Laplacian of the grey-level frames of each clip ([N, T, 3, H, W] -> [N]): high-frequency energy.

    The §5.2 argument in one number (reported relative to the real clips): a one-step EDM prediction is the
    posterior mean, which blurs what is unpredictable (Boxing's opponent) and so loses this energy, while a
    crisp sample keeps about as much as the real frames have."""
    grey = torch.as_tensor(frames, dtype=torch.float32).mean(dim=2, keepdim=True) / 255.0
    n, t = grey.shape[:2]
    kernel = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]).view(1, 1, 3, 3)
    lap = F.conv2d(grey.flatten(0, 1), kernel)
    return lap.pow(2).mean(dim=(1, 2, 3)).view(n, t).mean(dim=1).double().numpy()


def sampling_rate(model: WorldModel, context: np.ndarray, actions: np.ndarray, num_steps: int, seed: int) -> float:
    """Frames per second generated in sequence for one trajectory (batch 1), as the paper's 'sampling rate'.

    One frame is generated first, untimed, so that lazy initialisation (CUDA kernels) is not counted."""
    device = next(model.parameters()).device
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    generator = torch.Generator(device=device).manual_seed(seed)
    generate(model, context[:1], actions[:1, : model.num_history], num_steps, generator, desc="warm-up")
    sync()
    start = time.perf_counter()
    frames = generate(model, context[:1], actions[:1], num_steps, generator, desc="sampling rate")
    sync()
    return frames.shape[1] / max(time.perf_counter() - start, 1e-9)


def generate_clips(model: WorldModel, context: np.ndarray, actions: np.ndarray, num_steps: int,
                   protocol: ClipProtocol) -> np.ndarray:
    """Every clip generated open loop, `batch_size` clips at a time, from one noise stream seeded by the protocol."""
    generator = torch.Generator(device=next(model.parameters()).device).manual_seed(protocol.seed)
    b = protocol.batch_size
    return np.concatenate([generate(model, context[i : i + b], actions[i : i + b], num_steps, generator,
                                    desc="clips") for i in range(0, len(context), b)])


def real_clips(episodes: Sequence[Any], protocol: ClipProtocol) -> tuple[np.ndarray, np.ndarray]:
    """Real frames [N, context + clip_len, ...] and actions [N, context - 1 + clip_len] of the protocol's clips."""
    trajs = join_life_losses(episodes)
    starts = pick_starts(trajs, protocol.clips, protocol.context, protocol.clip_len, protocol.seed)
    before, after = protocol.context, protocol.clip_len
    obs = np.stack([trajs[i].obs[s - before + 1 : s + after + 1] for i, s in starts])
    act = np.stack([trajs[i].act[s - before + 1 : s + after] for i, s in starts])
    return obs, act


def evaluate_clips(model: WorldModel, episodes: Sequence[Any], settings: Sequence[dict[str, Any]],
                   protocol: ClipProtocol, extractors: dict[str, Any]) -> tuple[list[dict], dict[str, np.ndarray]]:
    """Every sampling setting on the same clips, noise and resamples: per-setting metrics and the arrays
    (per-clip values, Fréchet bootstrap replicates, kept frames) the report's CIs are computed from."""
    L = model.num_history
    if protocol.context < L:
        raise ValueError(f"clip context ({protocol.context}) must be at least the world model's L = {L}.")
    real, actions = real_clips(episodes, protocol)
    target, context, acts = real[:, protocol.context :], real[:, : protocol.context], actions[:, protocol.context - L :]
    nets = {k: v for k, v in extractors.items() if isinstance(v, torch.nn.Module)}
    resamples = clip_resamples(len(real), protocol.bootstrap_reps, protocol.seed)
    real_feats = {}
    if "inception" in nets:
        real_feats["fid"] = extract_features(target.reshape(-1, *target.shape[2:]), nets["inception"], desc="FID real")
    if "i3d" in nets:
        real_feats["fvd"] = extract_features(target, nets["i3d"], batch_size=8, desc="FVD real")
    arrays: dict[str, np.ndarray] = {"real": target[: protocol.keep], "real.sharpness": sharpness(target)}
    rows = []
    for s in tqdm(settings, desc="sampling settings", unit="setting", disable=len(settings) < 2):
        key, n = s["key"], int(s["num_steps"])
        with using_sampler(model, s["sampler"]):
            gen = generate_clips(model, context, acts, n, protocol)
            rate = sampling_rate(model, context, acts, n, protocol.seed)
            cost = nfe_at(model, s["sampler"], n)  # the model's own count, under this sampler
        per_clip = {"mse": (((target.astype(np.float64) - gen) / 255.0) ** 2).mean(axis=(1, 2, 3, 4)),
                    "sharpness": sharpness(gen)}
        if "lpips" in nets:
            per_clip["lpips"] = lpips_per_pair(target, gen, nets["lpips"]).numpy().reshape(len(gen), -1).mean(axis=1)
        row = {**s, "nfe": cost, "sample_rate_hz": rate,
               **{k: float(v.mean()) for k, v in per_clip.items()},
               "relative_sharpness": float(per_clip["sharpness"].mean() / max(arrays["real.sharpness"].mean(), 1e-12))}
        for metric, real_f in real_feats.items():
            net = nets["inception"] if metric == "fid" else nets["i3d"]
            data = gen.reshape(-1, *gen.shape[2:]) if metric == "fid" else gen
            gen_f = extract_features(data, net, batch_size=64 if metric == "fid" else 8, desc=f"{metric} {key}")
            row[metric] = frechet_distance(real_f, gen_f)
            arrays[f"{key}.{metric}_reps"] = frechet_replicates(real_f, gen_f, resamples)
        arrays.update({f"{key}.{m}": v for m, v in per_clip.items()})
        arrays[f"{key}.frames"] = gen[: protocol.keep]
        rows.append(row)
    return rows, arrays


def evaluate_world_model(run_dir: str | Path, model_dir: str | Path, dataset_dir: str | Path,
                         settings: Sequence[dict[str, Any]], protocol: dict[str, Any] | None = None,
                         test_fraction: float | None = 0.1) -> dict[str, Any]:
    """Run entry of the benchmark step: the trained world model in `model_dir` on the static dataset in
    `dataset_dir`, for each sampling setting ({key, label, sampler, num_steps}).

    `test_fraction`: evaluate on the held-out tail that static_wm kept out of training (same split), or
    None to use the whole dataset (data the model never trained on, e.g. collected after training)."""
    run_dir = Path(run_dir)
    if (run_dir / "result.json").is_file():
        return read_json(run_dir / "result.json")
    p = ClipProtocol.from_dict(protocol)
    keys = [s["key"] for s in settings]
    if not settings or len(set(keys)) != len(keys):
        raise ValueError(f"settings need at least one entry and unique keys, got {keys}.")
    start = time.perf_counter()
    model, cfg = load_world_model(model_dir)
    buffer, summary = load_dataset(dataset_dir)
    if summary["game"] != cfg.env.game:
        raise ValueError(f"{model_dir} models {cfg.env.game} but {dataset_dir} holds {summary['game']}.")
    episodes = buffer.episodes if test_fraction is None else split_episodes(buffer, test_fraction)[1]
    device = next(model.parameters()).device
    extractors = {k: v.to(device) if isinstance(v, torch.nn.Module) else v
                  for k, v in load_feature_networks(p.feature_networks).items()}
    rows, arrays = evaluate_clips(model, episodes, settings, p, extractors)
    atomic_write(run_dir / CLIPS_FILE, lambda f: np.savez_compressed(f, **arrays))
    if p.rollouts:
        tables = []
        for i, s in enumerate(settings):
            errors, _ = rollout_vs_real(model, episodes, starts=p.rollouts, horizon=p.horizon,
                                        num_steps_list=[int(s["num_steps"])], sampler=s["sampler"], seed=p.seed,
                                        copy_baseline=i == 0)
            tables.append(errors.assign(setting=[x if x == COPY_SETTING else s["key"] for x in errors["setting"]]))
        atomic_write_text(run_dir / ERRORS_FILE, pd.concat(tables, ignore_index=True).to_csv(index=False))
    result = {"game": cfg.env.game, "model_dir": str(model_dir), "dataset_dir": str(dataset_dir),
              "model_config_hash": config_hash(cfg), "history": cfg.diffusion.history,
              "num_history": model.num_history, "num_parameters": num_parameters(model), "device": str(device),
              "held_out": "whole dataset" if test_fraction is None else f"last {test_fraction:.0%} of the steps",
              "held_out_steps": sum(ep.num_steps for ep in episodes), "num_clips": len(arrays["real.sharpness"]),
              "protocol": p.to_dict(), "settings": rows,
              "unavailable": {k: str(v) for k, v in extractors.items() if not isinstance(v, torch.nn.Module)},
              "clips_file": CLIPS_FILE, "errors_file": ERRORS_FILE if p.rollouts else None,
              "dataset": {k: v for k, v in summary.items() if not isinstance(v, (list, dict))},
              "eval_time_s": time.perf_counter() - start}
    atomic_write_json(run_dir / "result.json", result)
    return result
