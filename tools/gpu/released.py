"""The authors' released code (eloialonso/diamond), copied by prepare.sh into an ignored folder, as the other side
of the A/B: its three update steps (as its trainer's `train_component` runs them) and one imagination step, with
the network sizes, batch and horizon of one of our configs, on the same real frames.

Nothing of it is vendored here: it is imported from the copy at run time (its `src/` goes first on sys.path,
because it imports its modules as top-level `agent`, `models`, `envs`, `utils`, ...).
"""

from __future__ import annotations

import importlib.util
import sys
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch import nn

from diamond.loop.config import Config
from diamond.loop.data import ReplayBuffer

# Imported at module level by the released utils.py for logging only (wandb.init/log in its Trainer and wandb_log),
# which nothing measured here calls; where it is not installed an empty module stands in so that the measurement
# does not depend on a 20 MiB logging client. Every other import of the measured code is the real package.
LOGGING_ONLY_IMPORTS = ("wandb",)


@dataclass
class ReleasedWorkload:
    steps: dict[str, Callable[[], Any]]  # denoiser_update, reward_end_update, actor_critic_update, imagination_step
    params: dict[str, int]  # parameter count of each model
    overrides: dict[str, Any]  # config keys set from our config
    differs_from_release: dict[str, list[Any]]  # key: [released default, value used]


def available(root: Path) -> str | None:
    """None if the copy at `root` can be imported, else why not (one sentence)."""
    if not (root / "src" / "agent.py").is_file() or not (root / "config" / "trainer.yaml").is_file():
        return f"no copy of the released code at {root} (run tools/gpu/prepare.sh PATH_TO_CHECKOUT)"
    for name in ("omegaconf", "torcheval", "gymnasium", "ale_py"):
        if importlib.util.find_spec(name) is None:
            return f"the released code needs the package {name}, which is not installed"
    return None


def _import(root: Path) -> types.SimpleNamespace:
    for name in LOGGING_ONLY_IMPORTS:
        if importlib.util.find_spec(name) is None:
            sys.modules[name] = types.ModuleType(name, "stand-in: imported by the released code for logging only")
    sys.path.insert(0, str(root / "src"))
    import agent  # noqa: PLC0415 - the released modules, importable only once src/ is on sys.path
    import data
    import envs
    import models.actor_critic as ac
    import models.diffusion as diffusion
    import models.rew_end_model as rem
    import utils
    return types.SimpleNamespace(agent=agent, data=data, envs=envs, ac=ac, diffusion=diffusion, rem=rem, utils=utils)


def overrides_from(cfg: Config, preload: int) -> dict[str, Any]:
    """The released config keys that carry our network sizes, batch, horizon and NFE (dotted, OmegaConf paths)."""
    d, t, n = cfg.diffusion, cfg.training, cfg.denoiser
    re, ac = cfg.reward_end, cfg.actor_critic
    out: dict[str, Any] = {
        "env.train.size": cfg.env.size,
        "agent.denoiser.inner_model.num_steps_conditioning": d.num_history,
        "agent.denoiser.inner_model.cond_channels": n.cond_dim,
        "agent.denoiser.inner_model.depths": list(n.depths),
        "agent.denoiser.inner_model.channels": list(n.channels),
        "agent.rew_end_model.lstm_dim": re.lstm_dim,
        "agent.rew_end_model.cond_channels": re.cond_dim,
        "agent.rew_end_model.depths": list(re.depths),
        "agent.rew_end_model.channels": list(re.channels),
        "agent.actor_critic.lstm_dim": ac.lstm_dim,
        "agent.actor_critic.channels": list(ac.channels),
        "denoiser.training.num_autoregressive_steps": d.train_chain - 1,
        "rew_end_model.training.seq_length": t.reward_end_seq_len + 1,  # frames: the same transitions as ours
        "world_model_env.horizon": t.imagination_horizon,
        "actor_critic.actor_critic_loss.backup_every": t.imagination_horizon,  # imagined steps per update
        "world_model_env.num_batches_to_preload": preload,
        "world_model_env.diffusion_sampler.num_steps_denoising": d.num_steps,
    }
    for name in ("denoiser", "rew_end_model", "actor_critic"):
        out[f"{name}.training.batch_size"] = t.batch_size
    return out


def _config(root: Path, overrides: dict[str, Any]) -> tuple[dict[str, Any], dict[str, list[Any]]]:
    from omegaconf import OmegaConf  # noqa: PLC0415 - optional: only the side-by-side needs it

    OmegaConf.register_new_resolver("eval", eval, replace=True)  # as the released main.py registers it
    c = root / "config"
    full = OmegaConf.merge(OmegaConf.load(c / "trainer.yaml"),
                           {"agent": OmegaConf.load(c / "agent" / "default.yaml"),
                            "env": OmegaConf.load(c / "env" / "atari.yaml")})
    released, differs = OmegaConf.to_container(full, resolve=True), {}
    for key, value in overrides.items():
        default = released
        for part in key.split("."):
            default = default[part]
        if default != value:
            differs[key] = [default, value]
        OmegaConf.update(full, key, value, merge=False)
    return OmegaConf.to_container(full, resolve=True), differs


def _fields(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k != "_target_"}


def _episodes(m: types.SimpleNamespace, replay: ReplayBuffer) -> Any:
    """Our collected episodes as the released Dataset's (frames in [-1, 1], the final frame in info)."""
    dataset = m.data.Dataset(Path("/nonexistent-released-dataset"), "train_dataset", cache_in_ram=True,
                             save_on_disk=False)
    for ep in replay.episodes:
        if ep.num_steps < 1:
            continue
        frames = torch.from_numpy(ep.obs).float().div(255).mul(2).sub(1)
        info = {"final_observation": frames[-1]} if ep.end[-1] else {}
        dataset.add_episode(m.data.Episode(
            obs=frames[:-1], act=torch.from_numpy(ep.act).long(), rew=torch.from_numpy(ep.rew).float(),
            end=torch.from_numpy(ep.end).long(), trunc=torch.from_numpy(ep.trunc).long(), info=info))
    return dataset


class SegmentIds:
    """Batches of the released SegmentIds, windows drawn uniformly (padding before the start, and after the end
    when `beyond_end`). Its own BatchSampler is not used: it passes the dataset to torch's Sampler.__init__, which
    newer torch releases no longer accept; which windows are drawn does not change what a step costs."""

    def __init__(self, m: types.SimpleNamespace, dataset: Any, batch_size: int, seq_length: int,
                 beyond_end: bool) -> None:
        self.m, self.dataset, self.batch_size, self.seq_length = m, dataset, batch_size, seq_length
        self.beyond_end = beyond_end
        self.rng = np.random.default_rng(0)

    def __iter__(self) -> Iterator[list[Any]]:
        lengths = np.asarray(self.dataset.lengths)
        while True:
            episodes = self.rng.choice(len(lengths), self.batch_size, p=lengths / lengths.sum())
            last = self.rng.integers(0, lengths[episodes])  # a frame that the window contains
            shift = self.rng.integers(0, self.seq_length, self.batch_size)
            if self.beyond_end:
                starts = last - shift
            else:
                starts = np.minimum(lengths[episodes], last + 1 + shift) - self.seq_length
            yield [self.m.data.SegmentId(int(e), int(a), int(a) + self.seq_length) for e, a in zip(episodes, starts)]


def released_workload(root: Path, cfg: Config, replay: ReplayBuffer, num_actions: int, device: torch.device,
                      fast: bool, preload: int) -> ReleasedWorkload:
    """The released agent at cfg's sizes on `replay`'s frames; `fast`: its trainer's own speed settings (TF32
    matmuls, the world-model env's predict functions compiled with mode="reduce-overhead"), else plain eager."""
    m = _import(root)
    overrides = overrides_from(cfg, preload)
    c, differs = _config(root, overrides)
    a = c["agent"]
    inner = m.diffusion.InnerModelConfig(**_fields(a["denoiser"]["inner_model"]))
    agent_cfg = m.agent.AgentConfig(
        denoiser=m.diffusion.DenoiserConfig(**{**_fields(a["denoiser"]), "inner_model": inner}),
        rew_end_model=m.rem.RewEndModelConfig(**_fields(a["rew_end_model"])),
        actor_critic=m.ac.ActorCriticConfig(**_fields(a["actor_critic"])), num_actions=num_actions)
    agent = m.agent.Agent(agent_cfg).to(device)
    dataset = _episodes(m, replay)

    def loader(name: str, seq_length: int, beyond_end: bool = False) -> torch.utils.data.DataLoader:
        sampler = SegmentIds(m, dataset, c[name]["training"]["batch_size"], seq_length, beyond_end)
        return torch.utils.data.DataLoader(dataset, batch_sampler=sampler, collate_fn=m.data.collate_segments_to_batch,
                                           pin_memory=device.type == "cuda")

    n_cond = a["denoiser"]["inner_model"]["num_steps_conditioning"]
    den_batch = next(iter(loader("denoiser", n_cond + 1 + c["denoiser"]["training"]["num_autoregressive_steps"])))
    rew_batch = next(iter(loader("rew_end_model", c["rew_end_model"]["training"]["seq_length"], True)))
    wm_cfg = c["world_model_env"]
    sampler_cfg = m.diffusion.DiffusionSamplerConfig(**_fields(wm_cfg["diffusion_sampler"]))
    wm_env = m.envs.WorldModelEnv(agent.denoiser, agent.rew_end_model, loader("actor_critic", n_cond),
                                  m.envs.WorldModelEnvConfig(wm_cfg["horizon"], wm_cfg["num_batches_to_preload"],
                                                             sampler_cfg))
    if fast:
        torch.backends.cuda.matmul.allow_tf32 = True  # the released Trainer's first line
        wm_env.predict_next_obs = torch.compile(wm_env.predict_next_obs, mode="reduce-overhead")
        wm_env.predict_rew_end = torch.compile(wm_env.predict_rew_end, mode="reduce-overhead")
    agent.setup_training(m.diffusion.SigmaDistributionConfig(**_fields(c["denoiser"]["sigma_distribution"])),
                         m.ac.ActorCriticLossConfig(**_fields(c["actor_critic"]["actor_critic_loss"])), wm_env)

    def update(name: str, batch: Any) -> Callable[[], None]:
        """One optimiser step as the released Trainer.train_component does it (grad_acc_steps = 1)."""
        model, t = getattr(agent, name), c[name]["training"]
        opt = m.utils.configure_opt(model, **c[name]["optimizer"])
        sched = m.utils.get_lr_sched(opt, t["lr_warmup_steps"])
        on_device = None if batch is None else batch.to(device)

        def step() -> None:
            model.train()
            loss, _ = model(on_device) if on_device is not None else model()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), t["max_grad_norm"])
            opt.step()
            opt.zero_grad()
            sched.step()
        return step

    wm_env.reset()

    def imagination_step() -> None:
        """One world-model step of the batch: n-step sampling of the next frames, then R_ψ."""
        next_obs, _ = wm_env.predict_next_obs()
        wm_env.predict_rew_end(next_obs.unsqueeze(1))

    steps = {"denoiser_update": update("denoiser", den_batch), "reward_end_update": update("rew_end_model", rew_batch),
             "actor_critic_update": update("actor_critic", None), "imagination_step": imagination_step}
    params = {name: count_params(getattr(agent, name)) for name in ("denoiser", "rew_end_model", "actor_critic")}
    return ReleasedWorkload(steps, params, overrides, differs)


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
