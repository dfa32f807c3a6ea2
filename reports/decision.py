"""Report section shared by the static world-model studies: is the world model useful for decisions?

Reads the `decision` entry of static runs' result.json (ablations/static_decision.py, evaluation/decision_eval.py):
action following, counterfactual fidelity and policy evaluation per run and n, with the emulator's ceiling and the
action-blind floors beside them. A metric whose ceiling does not beat its floors by its margin in every run is
named and left out (docs/world-model-metrics.md)."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import pandas as pd

from evaluation.decision_eval import pooled_rows
from reports.builder import Report
from reports.common import format_ci

METRICS = {  # key -> column title; "action_ratio" rides with "action_accuracy", "cf_mse_final" with "cf_gain"
    "action_accuracy": "action accuracy", "action_ratio": "÷ ceiling", "cf_gain": "CF error skill",
    "cf_mse_final": "CF MSE at T", "cf_spread_ratio": "CF spread ratio", "cf_match": "CF match",
    "policy_tau": "policy Kendall τ"}
RIDES_WITH = {"action_ratio": "action_accuracy", "cf_mse_final": "cf_gain"}
EXPLAIN = (
    "Action accuracy: an inverse-dynamics model trained on the dataset's real transitions names the action class "
    "behind each imagined next frame, every class asked once per probe state (chance 1 / classes); ÷ ceiling divides "
    "by the emulator's accuracy on the same states and actions. CF (counterfactual): from each probe, one future per "
    "held action class, in the model and in the emulator (ALE state cloned and restored); CF error skill = 1 − "
    "(model's MSE to its real counterfactual) / (copy-last-frame's), 1 for the emulator, 0 for copying; CF spread "
    "ratio = how far apart the imagined futures are (mean pairwise MSE) over how far apart the real ones are; CF "
    "match = fraction of imagined futures whose nearest real future is their own (chance 1 / classes). Policy τ: the "
    "scripted expert at ε ∈ {0, 0.1, 0.3, 0.6, 1} plays each probe in the real game; its actions are replayed open "
    "loop in the model, the reward/end judge (see above) gives expected rewards and ends, and Kendall τ "
    "compares the family's mean imagined returns with the real ones. [95 % bootstrap CI over probes].")


def decision_table(runs: Sequence[tuple[str, dict[str, Any]]], shown: Sequence[str]) -> pd.DataFrame:
    """One row per run and model setting, then the first run's ceiling and floors (the same probes in every run)."""
    rows = []
    references = {r["setting"] for r in runs[0][1]["rows"][:3]}
    for i, (label, d) in enumerate(runs):
        for r in d["rows"]:
            if r["setting"] in references and i > 0:
                continue
            name = r["setting"] if r["setting"] in references else f"{label}, {r['setting']}"
            rows.append({"model": name, **{METRICS[m]: format_ci(r[m], r[f"{m}_ci_low"], r[f"{m}_ci_high"])
                                           for m in shown}})
    models = [row for row in rows if row["model"] not in references]
    return pd.DataFrame([*models, *(row for row in rows if row["model"] in references)])


def pooled_by_arm(runs: Sequence[tuple[str, dict[str, Any]]], arm_of: Mapping[str, str]) -> list[dict[str, Any]]:
    """One row per arm and model setting: the arm's runs (seeds, same probes) pooled probe by probe (pooled_rows),
    with each run's own policy τ beside the pooled one (pooling can rank where no single model does)."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for label, d in runs:
        groups.setdefault(arm_of[label], []).append(d)
    references = {r["setting"] for r in runs[0][1]["rows"][:3]}
    return [{"arm": arm, "runs": len(ds), **pooled_rows(ds, setting),
             "policy_tau_per_run": [next(r for r in d["rows"] if r["setting"] == setting) for d in ds]}
            for arm, ds in groups.items()
            for setting in [r["setting"] for r in ds[0]["rows"] if r["setting"] not in references]]


def arm_table(pooled: Sequence[dict[str, Any]], shown: Sequence[str]) -> pd.DataFrame:
    rows = []
    for r in pooled:
        row = {"arm": r["arm"], "setting": r["setting"], "runs": r["runs"],
               **{METRICS[m]: format_ci(r[m], r[f"{m}_ci_low"], r[f"{m}_ci_high"]) for m in shown}}
        if "policy_tau" in shown:
            row["policy τ per run"] = "; ".join(format_ci(x["policy_tau"], x["policy_tau_ci_low"],
                                                          x["policy_tau_ci_high"]) for x in r["policy_tau_per_run"])
        rows.append(row)
    return pd.DataFrame(rows)


def arm_findings(pooled: Sequence[dict[str, Any]], references: Sequence[dict[str, Any]], reported: Sequence[str]
                 ) -> str:
    """Which arm × n settings beat the best floor of each reported metric (95 % CI above it), which are not told
    apart from it, and which fall below it (CI under it: worse than an action-blind model)."""
    floor = {m: max(r[m] for r in references[1:]) for m in reported}
    parts = []
    for m in reported:
        def names(test: Any) -> str:
            return ", ".join(f"{r['arm']} {r['setting']}" for r in pooled if test(r)) or "none"

        parts.append(f"{METRICS[m]} (ceiling {references[0][m]:.3g}, best floor {floor[m]:.3g}): above the floor "
                     f"{names(lambda r: r[f'{m}_ci_low'] > floor[m])}; not told apart from it "
                     f"{names(lambda r: r[f'{m}_ci_low'] <= floor[m] <= r[f'{m}_ci_high'])}; below it "
                     f"{names(lambda r: r[f'{m}_ci_high'] < floor[m])}")
    return ("Per arm, each 95 % CI against the best floor — " + "; ".join(parts) + ". What this adds to "
            "the pixel metrics: a frame error says how close the imagined frames are, not whether they carry the "
            "action (copying the last frame has a small error and chance accuracy). A setting not told apart from "
            "the floor gives an agent no more usable signal than an action-blind model; one below it gives a "
            "misleading one (for τ: a policy trained inside it would prefer what the real game punishes).")


def returns_table(runs: Sequence[tuple[str, dict[str, Any]]]) -> pd.DataFrame:
    """Mean return of each policy of the family: real, and inside each model (the judge's expected rewards)."""
    first = pd.DataFrame(runs[0][1]["policy_returns"])
    real = first.drop_duplicates("policy").set_index("policy")["real"]
    rows = [{"model": "real game", **real.to_dict()}]
    references = [r["setting"] for r in runs[0][1]["rows"][:3]]
    for i, (label, d) in enumerate(runs):
        table = pd.DataFrame(d["policy_returns"]).pivot(index="setting", columns="policy", values="imagined")
        for setting in table.index:
            if setting in references and i > 0:
                continue
            name = setting if setting in references else f"{label}, {setting}"
            rows.append({"model": name, **table.loc[setting].to_dict()})
    return pd.DataFrame(rows)


def _not_separated(runs: Sequence[tuple[str, dict[str, Any]]], metric: str) -> str:
    d = runs[0][1]
    by = {r["setting"]: r[metric] for r in d["rows"]}
    ceiling, floors = d["rows"][0]["setting"], [r["setting"] for r in d["rows"][1:3]]
    return (f"{METRICS[metric]} (ceiling {by[ceiling]:.3g}, floors " + ", ".join(f"{by[f]:.3g}" for f in floors)
            + f", margin {d['margins'][metric]:g})")


def judge_text(d: dict[str, Any]) -> str:
    """The reward/end judge and its held-out cross-entropies beside the best constant guess's: whether it learned
    more than the base rate (one that did not gives every policy the same return)."""
    h, settings = d.get("reward_end_heldout"), d["settings"]
    if not h:
        return ""
    if settings.get("reward_judge", "r_psi") == "detector":
        judge = (f"The reward/end judge, shared by every model: an event detector (a conv net on each transition's "
                 f"frame and amplified frame change, no actions, {settings['reward_end_steps']} updates)")
    else:
        variants = "".join(text for key, text in (("reward_end_blind", ", action-blind"),
                                                 ("reward_end_prior", ", started at the base rate"))
                           if settings.get(key))
        judge = f"The reward/end judge, shared by every model: R_ψ ({settings['reward_end_steps']} updates{variants})"
    return (f"{judge}; on held-out transitions ({h['transitions']}, {h['rewarded']} rewarded, {h['ends']} ends) its "
            f"reward cross-entropy is {h['reward_ce']:.3f} against {h['reward_ce_constant']:.3f} for the best "
            f"constant guess, end {h['end_ce']:.4f} against {h['end_ce_constant']:.4f}. ")


def decision_section(report: Report, runs: Sequence[tuple[str, dict[str, Any]]], level: int = 2,
                     arm_of: Mapping[str, str] | None = None) -> None:
    """The section: what was measured, the metrics that separate ceiling from floor (per arm when `arm_of` maps
    run labels to arms, then per run), the policy returns, the cost. `runs`: (label, result.json) of finished
    decision measurements; runs without decision metrics are named and skipped."""
    report.heading("Decision fidelity: action following, counterfactuals, policy evaluation", level)
    skipped = [f"{label}: {r.get('decision', {}).get('skipped', 'not measured')}" for label, r in runs
               if "rows" not in r.get("decision", {})]
    measured = [(label, r["decision"]) for label, r in runs if "rows" in r.get("decision", {})]
    if skipped:
        report.paragraph("Not measured — " + "; ".join(skipped) + ".")
    if not measured:
        return
    first = measured[0][1]
    meanings = first.get("action_meanings")
    classes = ", ".join("/".join(meanings[a] if meanings else str(a) for a in c) for c in first["classes"])
    report.paragraph(f"{first['num_probes']} probe states of fresh expert games (held out: another seed), ALE state "
                     f"cloned at each. Action classes, merged where the emulator's next frames agree in at least "
                     f"{first['settings']['merge_threshold']:g} of the probes: {classes}. Inverse-dynamics balanced "
                     f"accuracy on the held-out episodes' real transitions (expert actions): "
                     f"{first.get('idm_heldout_balanced_accuracy', float('nan')):.3f}. " + judge_text(first) + EXPLAIN)
    reported = [m for m in METRICS if m not in RIDES_WITH and all(d["reported"][m] for _, d in measured)]
    shown = [m for m in METRICS if m in reported or RIDES_WITH.get(m) in reported]
    dropped = [m for m in METRICS if m not in RIDES_WITH and m not in reported]
    if arm_of:
        pooled = pooled_by_arm(measured, arm_of)
        report.table(arm_table(pooled, shown), "decision_metrics_per_arm", caption="Decision metrics per "
                     "arm and n: each probe's numbers averaged over the arm's runs (seeds; every run uses the same "
                     "probes and judges), then the metric [95 % bootstrap CI over probes]; 'policy τ per run' gives "
                     "each run's own τ (seed order), the pooled τ ranks the runs' mean returns.")
        if reported:
            report.paragraph(arm_findings(pooled, first["rows"][:3], reported))
    report.table(decision_table(measured, shown), "decision_metrics", caption="Decision metrics per model and n, "
                 "then the ceiling (the emulator as a world model) and the floors (copy-last-frame; the emulator "
                 "fed NOOP whatever the action) on the same probes, judged by the same IDM and reward/end judge.")
    if dropped:
        report.paragraph("Not reported, because the ceiling does not beat both floors by the margin in every run: "
                         + "; ".join(_not_separated(measured, m) for m in dropped) + ".")
    report.table(returns_table(measured), "policy_returns", caption=f"Mean return over the probes, "
                 f"{first['settings']['policy_horizon']} steps, up to the first life loss (reward signs): real, and "
                 "imagined with the judge's expected rewards and survival.", float_fmt="{:.2f}")
    costs = "; ".join(f"{label}: " + ", ".join(f"{k.replace('_', ' ')} {v:.0f} s" for k, v in d["cost_cpu_s"].items())
                      + f" (total {sum(d['cost_cpu_s'].values()) / 60:.1f} min)" for label, d in measured)
    judges = first.get("judges_cost_cpu_s")
    shared = "" if not judges else ("Judges, trained once for every run: " + ", ".join(
        f"{k.replace('_', ' ')} {v:.0f} s" for k, v in judges.items()) + f" (total {sum(judges.values()) / 60:.1f} min). ")
    report.paragraph(f"{shared}Cost per run, CPU seconds of the run's process: {costs}.")
