"""Why the EDM models rank the policy family inversely (README, "Decision metrics"): for EDM s0 at n = 1 on 6 of
the decision probes, per policy, the event detector's expected rewards and summed end probability and the mean
absolute frame change per step, on the real frames (emulator) and on the imagined ones; plus the real rewards and
life losses over the 150 steps. Reads the committed suite's run folders under R (adjust it to yours).

    PYTHONPATH=. python docs/results/ablation_ddpm_vs_edm-cpu/measure_inverse_ranking.py
"""
import json
from pathlib import Path

import numpy as np
import torch

torch.set_num_threads(1)
from ablations.static_decision import action_meanings, decision_probes, expert_family
from ablations.static_wm import load_trained_model
from diamond.loop.config import from_dict
from diamond.loop.data import to_float
from diamond.run.io import read_yaml
from evaluation.decision import play_policies, rollout
from evaluation.decision_eval import DecisionSettings
from evaluation.decision_models import load_judges
from evaluation.emulator_wm import EmulatorWorldModel
from evaluation.wm_protocol import AtSteps, _new_generator

R = Path("runs/ablation_ddpm_vs_edm/cpu/")
jr = json.load(open(R / "judges-Breakout/result.json"))
s = DecisionSettings.from_dict({**jr["settings"], "probes": 6})
jcfg = from_dict(read_yaml(R / "judges-Breakout/config.yaml"))
_, det, _ = load_judges(R / "judges-Breakout/checkpoints/judges.pt", jcfg, 4)
cfg = from_dict(read_yaml(R / "wm-edm-Breakout-s0/config.yaml"))
model, _ = load_trained_model(cfg, R / "wm-edm-Breakout-s0", 4, torch.device("cpu"))
probes = decision_probes(4, s)
acts, rews, losses = play_policies(probes, expert_family(action_meanings()), 150, 0)
A = acts.transpose(1, 0, 2).copy()  # [K, P, T]
real_frames = rollout(EmulatorWorldModel(probes), probes, A)
with torch.no_grad():
    imag = rollout(AtSteps(model, 1, _new_generator(torch.device("cpu"), 0)), probes, A)
def judge(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    k, p, t = A.shape
    ctx = to_float(torch.from_numpy(np.repeat(probes.obs[:, -1:], p, axis=0)))
    nxt = to_float(torch.from_numpy(frames.reshape(k * p, t, *frames.shape[3:])))
    prev = torch.cat([ctx, nxt[:, :-1]], 1)
    with torch.no_grad():
        r, e, _ = det(prev, torch.zeros(k * p, t, dtype=torch.long), nxt)
    pr = (r.softmax(-1)[..., 2] - r.softmax(-1)[..., 0]).reshape(k, p, t).numpy(); pe = e.softmax(-1)[..., 1].reshape(k, p, t).numpy()
    change = np.abs(np.diff(np.concatenate([np.repeat(probes.obs[:, None, -1:], p, 1), frames], 2).astype(float), axis=2)).mean((3, 4, 5))
    return pr, pe, change
for name, f in (("real", real_frames), ("EDM n=1 s0", imag)):
    pr, pe, ch = judge(f)
    print(name, "per policy: sum E[r]", pr.sum(2).mean(0).round(2).tolist(), "sum p(end)", pe.sum(2).mean(0).round(2).tolist(),
          "mean |frame change|", ch.mean((0, 2)).round(2).tolist(), flush=True)
print("real rewards per policy (all 150 steps, no stop)", np.sign(rews).sum(2).mean(1).round(2).tolist(), "life losses", losses.sum(2).mean(1).round(2).tolist())
