"""Evaluate an agent checkpoint on the paper's protocol and write a run folder the reports accept.

    python -m diamond.evaluate --checkpoint runs/atari100k/paper/Breakout-s0/checkpoints/last.pt \\
        --game Breakout --episodes 100 --out evals/Breakout-s0
    python -m diamond.evaluate --checkpoint Breakout.pt --official --game Breakout --seed 0 \\
        --out runs/atari100k/paper/Breakout-s0      # one of the authors' released agents

The protocol is the trainer's own evaluation (Trainer.evaluate, reused, not copied): full test games
(no life-loss termination, raw rewards, up to 108k frames), the policy's actions sampled, ε = 0, the
per-seed score the mean return. --official reads the released format (`denoiser.`, `rew_end_model.`,
`actor_critic.` prefixes) through the key mapping of diamond/official.py. The folder gets config.yaml
and result.json (the fields of a trained run's result.json); with --out runs/atari100k/<profile>/<Game>-s<seed>
`run_suite.py --suite atari100k --profile <profile> --report-only` reports it beside trained runs.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from diamond.agent import Agent, build_agent
from diamond.config import Config, build_config, config_hash, to_dict
from diamond.cli import run_cli
from diamond.errors import KnownError, UsageError
from diamond.games import GAMES, human_normalized_score
from diamond.io import atomic_write_json, atomic_write_yaml
from diamond.official import convert_agent
from diamond.trainer import Trainer, resolve_device


class CheckpointError(KnownError):
    """A checkpoint file that is missing, unreadable, or does not fit the game or the networks."""

    exit_code = 2


def read_state(path: Path) -> dict[str, Any]:
    """The file's tensors (weights_only: a checkpoint is untrusted data)."""
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure means it is not a checkpoint
        raise CheckpointError(f"{path}: not a PyTorch checkpoint ({type(e).__name__}).") from e
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: holds a {type(state).__name__}, not a checkpoint's mapping.")
    return state


def agent_state(state: dict[str, Any], path: Path, official: bool) -> dict[str, torch.Tensor]:
    """Our Agent's state dict from a trainer checkpoint (its `agent` entry) or a released agent (--official)."""
    if official:
        return convert_agent(state, str(path))
    if "agent" not in state or not isinstance(state["agent"], dict):
        hint = " (a released agent? pass --official)" if any(k.startswith("actor_critic.") for k in state) else ""
        raise CheckpointError(f"{path}: no `agent` entry; not a checkpoint written by diamond.train{hint}.")
    return state["agent"]


def load_agent(path: Path, cfg: Config, num_actions: int, official: bool) -> Agent:
    """Build the networks of `cfg` for the game and load the checkpoint into them (strict)."""
    weights = agent_state(read_state(path), path, official)
    policy = weights.get("actor_critic.policy.weight")
    if policy is None:
        raise CheckpointError(f"{path}: no actor-critic policy head (`actor_critic.policy.weight`).")
    if policy.shape[0] != num_actions:
        raise CheckpointError(f"{path}: the agent has {policy.shape[0]} actions but {cfg.env.game} has {num_actions}; "
                              "pass the game it was trained on.")
    agent = build_agent(cfg, num_actions)
    ours = agent.state_dict()
    missing = sorted(set(ours) - set(weights))
    if missing:
        raise CheckpointError(f"{path}: missing {len(missing)} weights of the configured networks, e.g. `{missing[0]}`.")
    extra = sorted(set(weights) - set(ours))
    wrong = [k for k in ours if tuple(weights[k].shape) != tuple(ours[k].shape)]
    if extra or wrong:
        k = (extra or wrong)[0]
        raise CheckpointError(f"{path}: `{k}` does not fit the configured networks (another profile or --set?).")
    agent.load_state_dict(weights, strict=True)
    return agent


class _Evaluation:
    """What Trainer.evaluate reads (config, device, agent, action count, numpy generator): the protocol is
    the trainer's method itself, run here without a training env or replay."""

    evaluate = Trainer.evaluate

    def __init__(self, cfg: Config, agent: Agent, num_actions: int) -> None:
        self.cfg, self.num_actions = cfg, num_actions
        self.device = resolve_device(cfg.perf.device)
        self.agent = agent.to(self.device)
        self.rng = np.random.default_rng(cfg.seed)


def evaluate_checkpoint(path: Path, cfg: Config, episodes: int, out: Path, official: bool) -> dict[str, Any]:
    """Play `episodes` test episodes with the checkpoint's policy; write out/config.yaml and out/result.json."""
    from diamond.envs import num_actions as game_actions

    n = game_actions(cfg.env.game)
    torch.manual_seed(cfg.seed)
    run = _Evaluation(cfg, load_agent(path, cfg, n, official), n)
    start = time.perf_counter()
    returns = run.evaluate(episodes)
    mean = float(np.mean(returns))
    result = {
        "game": cfg.env.game, "seed": cfg.seed, "profile": cfg.profile, "config_hash": config_hash(cfg),
        "episode_returns": returns, "mean_return": mean, "score": mean,
        "hns": float(human_normalized_score(cfg.env.game, mean)) if cfg.env.game in GAMES else None,
        "num_episodes": len(returns), "env_steps": cfg.training.total_env_steps, "epochs": cfg.training.epochs,
        "wall_time_s": time.perf_counter() - start, "device": str(run.device), "nfe": run.agent.world_model.nfe,
        "checkpoint": str(path), "checkpoint_format": "official" if official else "diamond",
    }
    atomic_write_yaml(out / "config.yaml", to_dict(cfg))
    atomic_write_json(out / "result.json", result)  # last: its presence means "done"
    return result


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m diamond.evaluate", description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", type=Path, required=True, help="checkpoints/last.pt of a run, or a released agent")
    p.add_argument("--official", action="store_true", help="the checkpoint is in the authors' released format")
    p.add_argument("--game", required=True, help="Atari game the agent was trained on, e.g. Breakout")
    p.add_argument("--episodes", type=int, default=None, help="test episodes (default: the profile's, 100 for paper)")
    p.add_argument("--seed", type=int, default=0, help="seed of the evaluation (and the run name it reports as)")
    p.add_argument("--profile", default="paper", help="profile whose networks the checkpoint has (default paper)")
    p.add_argument("--set", dest="overrides", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides")
    p.add_argument("--out", type=Path, required=True, help="folder for config.yaml and result.json")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """The command line under the shared error path (diamond/cli.py): returns the exit status."""
    return run_cli("python -m diamond.evaluate", _main, argv)


def _main(argv: list[str]) -> int:
    args = parse_args(argv)
    cfg = build_config(args.profile, list(args.overrides), seed=args.seed, **{"env.game": args.game})
    episodes = cfg.training.eval_episodes if args.episodes is None else args.episodes
    if episodes < 1:
        raise UsageError(f"--episodes must be at least 1, got {episodes}.")
    result = evaluate_checkpoint(args.checkpoint, cfg, episodes, args.out, args.official)
    print(f"{cfg.env.game} seed {cfg.seed}: mean return {result['mean_return']:.2f} over {result['num_episodes']} "
          f"episodes -> {args.out / 'result.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
