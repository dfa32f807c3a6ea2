"""Evaluate an agent checkpoint on the paper's protocol and write a run folder the reports accept.

    python -m diamond.evaluate --checkpoint runs/atari100k/paper/Breakout-s0/checkpoints/last.pt \\
        --game Breakout --episodes 100 --out evals/Breakout-s0
    python -m diamond.evaluate --checkpoint runs/breakout-smoke/checkpoints/last.pt --profile smoke \\
        --game Breakout --episodes 2 --out evals/breakout-smoke    # --profile: the one the run was trained with
    python -m diamond.evaluate --checkpoint Breakout.pt --official --game Breakout --seed 0 \\
        --out runs/atari100k/paper/Breakout-s0      # one of the authors' released agents

The protocol is the trainer's own evaluation (Trainer.evaluate, reused, not copied): full test games
(no life-loss termination, raw rewards, up to 108k frames), the policy's actions sampled, ε = 0, the
per-seed score the mean return. --official reads the released format (`denoiser.`, `rew_end_model.`,
`actor_critic.` prefixes) through the key mapping of diamond/models/official.py. The folder gets config.yaml
and result.json (the fields of a trained run's result.json); with --out runs/atari100k/<profile>/<Game>-s<seed>
`run_suite.py --suite atari100k --profile <profile> --report-only` reports it beside trained runs.
--out follows the run-folder rules of diamond.train (diamond/run/rundir.py): its identity in run.json, a lock
while it works, and a refusal in one sentence of a folder that holds another run, a training run, or a
result this command did not make; the same evaluation again does nothing.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from diamond.loop.agent import Agent, build_agent
from diamond.loop.config import FIELD_RULES, PROFILES, Config, TrainingConfig, build_config, config_hash, to_dict
from diamond.loop.games import GAMES, human_normalized_score
from diamond.loop.profiles import PROFILE_HELP
from diamond.loop.trainer import Trainer, check_gpu, resolve_device, run_epochs
from diamond.models.official import convert_agent
from diamond.run.cli import DEBUG_HELP, run_cli
from diamond.run.errors import KnownError, RunFolderError, UsageError
from diamond.run.io import atomic_write_json, atomic_write_yaml, read_yaml
from diamond.run.rundir import IDENTITY_FILE, check_identity, hold_lock, read_result, record_identity
from diamond.train import check_game, check_seed

PROG = "python -m diamond.evaluate"
MAX_EPISODES = FIELD_RULES[TrainingConfig]["eval_episodes"].hi


class CheckpointError(KnownError):
    """A checkpoint file that is missing, unreadable, or does not fit the game or the networks (a bad file: exit 1)."""


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


def mismatch_hint(path: Path, cfg: Config, key: str) -> str:
    """What to pass so the networks fit: the world model the run's config.yaml names when it is not the one this
    command builds (a checkpoint in <run>/checkpoints/), else, for a world-model weight, the factory as the likely
    cause, else the --profile."""
    run_config = path.parent.parent / "config.yaml"
    trained = read_yaml(run_config).get("world_model", {}) if run_config.is_file() else {}
    factory, options = cfg.world_model.factory, dict(cfg.world_model.options)
    if trained and (trained.get("factory"), dict(trained.get("options") or {})) != (factory, options):
        return (f"the run was trained with world_model.factory {trained.get('factory')!r} and world_model.options "
                f"{dict(trained.get('options') or {})} ({run_config}), this command builds {factory!r} with "
                f"{options}: pass --set world_model.factory={trained.get('factory')} (and its options).")
    if key.startswith("world_model."):
        return (f"the world model that world_model.factory {factory!r} builds is not the checkpoint's: pass the "
                "world_model.factory (and world_model.options) the run was trained with as --set, or its --profile.")
    return "pass the --profile (and --set options) the run was trained with, e.g. --profile smoke."


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
        raise CheckpointError(f"{path}: missing {len(missing)} weights of the networks of --profile {cfg.profile}, "
                              f"e.g. `{missing[0]}`: " + mismatch_hint(path, cfg, missing[0]))
    extra = sorted(set(weights) - set(ours))
    wrong = [k for k in ours if tuple(weights[k].shape) != tuple(ours[k].shape)]
    if extra or wrong:
        k = (extra or wrong)[0]
        raise CheckpointError(f"{path}: `{k}` does not fit the networks of --profile {cfg.profile}: "
                              + mismatch_hint(path, cfg, k))
    agent.load_state_dict(weights, strict=True)
    return agent


class _Evaluation:
    """What Trainer.evaluate reads (config, device, agent, action count, env factory, numpy generator): the protocol is
    the trainer's method itself, run here without a training env or replay."""

    evaluate, agent_policy = Trainer.evaluate, Trainer.agent_policy

    def __init__(self, cfg: Config, agent: Agent, num_actions: int) -> None:
        from diamond.loop.envs import make_env

        self.cfg, self.num_actions, self.make_env = cfg, num_actions, make_env
        self.device = resolve_device(cfg.perf.device)
        self.agent = agent.to(self.device)
        self.rng = np.random.default_rng(cfg.seed)


def evaluate_agent(agent: Agent, path: Path, cfg: Config, episodes: int, out: Path, official: bool) -> dict[str, Any]:
    """Play `episodes` test episodes with the policy of `agent` (loaded from `path`); write out/config.yaml and
    out/result.json."""
    torch.manual_seed(cfg.seed)
    run = _Evaluation(cfg, agent, agent.actor_critic.policy.out_features)
    start = time.perf_counter()
    returns = run.evaluate(episodes)
    mean = float(np.mean(returns))
    result = {
        "game": cfg.env.game, "seed": cfg.seed, "profile": cfg.profile, "config_hash": config_hash(cfg),
        "episode_returns": returns, "mean_return": mean, "score": mean,
        "hns": float(human_normalized_score(cfg.env.game, mean)) if cfg.env.game in GAMES else None,
        "num_episodes": len(returns), "env_steps": cfg.training.total_env_steps, "epochs": run_epochs(cfg.training),
        "wall_time_s": time.perf_counter() - start, "device": str(run.device), "nfe": run.agent.world_model.nfe,
        "checkpoint": str(path.resolve()), "checkpoint_format": "official" if official else "diamond",
    }
    atomic_write_yaml(out / "config.yaml", to_dict(cfg))
    atomic_write_json(out / "result.json", result)  # last: its presence means "done"
    return result


def check_out(out: Path, checkpoint: Path, episodes: int) -> dict[str, Any] | None:
    """What --out holds (call it under the folder's lock): None when the evaluation may write it, the earlier
    result when it is this same evaluation; a training run or another command's result is refused."""
    if (out / "result.json").is_file():
        done = read_result(out)
        if done.get("checkpoint") == str(checkpoint.resolve()) and done.get("num_episodes") == episodes:
            return done
        made = (f"an evaluation of {done['checkpoint']} over {done.get('num_episodes')} episodes"
                if "checkpoint" in done else "a finished training run")
        raise RunFolderError(f"--out {out} already holds the result of {made}; diamond.evaluate never overwrites "
                             "a result it did not make: choose another --out")
    if (out / "checkpoints").exists() or (out / "metrics.jsonl").exists():
        raise RunFolderError(f"--out {out} holds a training run (checkpoints/, metrics.jsonl); evaluating into it "
                             "would mark it finished: choose another --out")
    return None


def check_not_a_folder_of_runs(out: Path) -> None:
    """--out that holds run folders (a suite's runs/<suite>/<profile>/) is not a run folder: the evaluation would
    write its files beside theirs."""
    if not out.is_dir():
        return
    runs = sorted(d.name for d in out.iterdir()
                  if d.is_dir() and any((d / name).is_file() for name in (IDENTITY_FILE, "result.json", "config.yaml")))
    if runs:
        shown = ", ".join(runs[:3]) + (f" and {len(runs) - 3} more" if len(runs) > 3 else "")
        raise RunFolderError(f"--out {out} holds run folders ({shown}), so it is not a run folder; choose a folder "
                             f"of its own, e.g. {out / 'my-eval'}")


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0],
                                epilog=f"{DEBUG_HELP} Exit statuses: see the README.")
    p.add_argument("--checkpoint", type=Path, required=True, help="checkpoints/last.pt of a run, or a released agent")
    p.add_argument("--official", action="store_true", help="the checkpoint is in the authors' released format")
    p.add_argument("--game", required=True, help="Atari game the agent was trained on, e.g. Breakout")
    p.add_argument("--episodes", type=int, default=None, help="test episodes (default: the profile's, 100 for paper)")
    p.add_argument("--seed", type=int, default=0, help="seed of the evaluation (and the run name it reports as)")
    p.add_argument("--profile", default="paper", choices=list(PROFILES),
                   help="the profile the checkpoint was trained with: its networks must match (default paper). "
                        + PROFILE_HELP)
    p.add_argument("--set", dest="overrides", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides")
    p.add_argument("--out", type=Path, required=True, help="folder for config.yaml and result.json")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """The command line under the shared error path (diamond/run/cli.py): returns the exit status."""
    return run_cli(PROG, _main, argv)


def _main(argv: list[str]) -> int:
    args = parse_args(argv)
    check_seed(args.seed)
    check_game(args.game)
    cfg = build_config(args.profile, list(args.overrides), seed=args.seed, **{"env.game": args.game})
    check_gpu(cfg)
    episodes = cfg.training.eval_episodes if args.episodes is None else args.episodes
    if not 1 <= episodes <= MAX_EPISODES:
        raise UsageError(f"--episodes must be an integer in [1, {MAX_EPISODES}], got {episodes}.")
    from diamond.loop.envs import num_actions

    agent = load_agent(args.checkpoint, cfg, num_actions(cfg.env.game), args.official)  # a bad file: before --out
    identity = {"game": cfg.env.game, "seed": cfg.seed, "profile": cfg.profile, "config_hash": config_hash(cfg)}
    check_not_a_folder_of_runs(args.out)
    with hold_lock(args.out) as out:
        check_identity(out, identity, to_dict(cfg))  # another run's folder: named by what differs (the game...)
        result = check_out(out, args.checkpoint, episodes)
        if result is not None:
            print(f"{out}: this evaluation is already done (result.json); nothing to do")
        else:
            record_identity(out, identity, to_dict(cfg))
            result = evaluate_agent(agent, args.checkpoint, cfg, episodes, out, args.official)
    print(f"{cfg.env.game} seed {cfg.seed}: mean return {result['mean_return']:.2f} over {result['num_episodes']} "
          f"episodes -> {args.out / 'result.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
