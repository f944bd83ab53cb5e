"""Render benchmarks/results/*.json as markdown tables and put them into README.md.

    python benchmarks/report.py            # rewrite the block between the README markers
    python benchmarks/report.py --print    # only print the markdown

Every number in the README's benchmark section comes from here; nothing is typed by hand.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (GOAL_CONFIDENCE, MAX_FALLBACK_FRACTION, fmt_or_dash as _fmt, goal_cells,  # noqa: E402
                     issue14_goals, met_only_by_fallback)

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
START, END = "<!-- benchmarks:start -->", "<!-- benchmarks:end -->"


def _stack_line(stack: Dict) -> str:
    cpu = stack.get("cpu_model") or stack.get("processor") or stack.get("machine", "")
    parts = [f"{stack.get('cpu_count')} CPU cores ({cpu})" if stack.get("cpu_count") else cpu,
             f"torch {stack.get('torch')}",
             f"{stack.get('torch_threads')} torch threads" if stack.get("torch_threads") else None,
             f"OpenMM {stack['openmm']}" if stack.get("openmm") else None,
             f"openmmtorch {stack['openmmtorch']}" if stack.get("openmmtorch") else None,
             f"GPU {stack['gpu']}" if stack.get("gpu") else None]
    return "Measured on " + ", ".join(p for p in parts if p) + "."


def render_pet_forward(data: Dict, name: str) -> List[str]:
    tuned = " with glibc's malloc kept from mmap (`--tune-malloc`)" if data.get("malloc_tuned") else ""
    lines = [f"### PET forward time{tuned} (`{name}`)", "",
             f"{data['description']}; {data['model']['parameters']} parameters, {data['model']['dtype']}, "
             f"median of {data['repeats']} runs.", "",
             "| atoms | neighbour list | forward (ms) | per atom (µs) |", "|---:|---|---:|---:|"]
    for row in data["results"]:
        lines.append(f"| {row['n_atoms']} | {row['neighbor_method']} | {row['forward_median_s'] * 1e3:.1f} | "
                     f"{row['forward_per_atom_us']:.0f} |")
    lines += ["", f"Fitted exponent (time ∝ N^a): a = {data['scaling_exponent_all_sizes']:.2f} over all sizes, "
                  f"{data['scaling_exponent_n_ge_999']:.2f} for N ≥ 999. " + _stack_line(data["stack"]), ""]
    return lines


def render_integrator_overhead(data: Dict, name: str) -> List[str]:
    lines = [f"### Integrator overhead on the {data['platform']} platform (`{name}`)", "",
             f"One `FlashMDIntegrator` step (splitting \"{data['splitting']}\", {data['stride_ps'] * 1000:g} fs, "
             f"{data['model']}) against the bare model forward plus one energy evaluation of the same System, "
             "interleaved in one run; with the stride monitor (the default) against the same step without it "
             "(`fallback=False`), no stride rejected; and the adapter's check that SETTLE can constrain a "
             "stride (rigid water only), timed on a rigid box of as many waters, as a share of the step.", "",
             "| atoms | step (ms) | model + energy (ms) | ratio | step without monitor (ms) | monitor cost "
             "| SETTLE check |",
             "|---:|---:|---:|---:|---:|---:|---:|"]
    for row in data["results"]:
        without = row.get("step_without_monitor_s")
        share = row.get("settle_check_share")
        lines.append(f"| {row['n_atoms']} | {row['stride_step_s']['median'] * 1e3:.1f} | "
                     f"{row['model_plus_energy_s']['median'] * 1e3:.1f} | {row['overhead_ratio']:.2f} | "
                     + (f"{without['median'] * 1e3:.1f} | {100 * (row['monitor_ratio'] - 1):+.1f} % |"
                        if without else "not measured | |")
                     + (f" {100 * share:.2f} % |" if share is not None else " not measured |"))
    lines += ["", _stack_line(data["stack"]), ""]
    return lines


def render_fallback_thresholds(data: Dict, name: str) -> List[str]:
    lines = [f"### Stride monitor on reference states (`{name}`)", "",
             "One monitored NVE stride (\"F E\") of each bundled model from held-out reference frames of its "
             "System: how many the monitor rejects at the defaults (a false rejection: these states are the "
             "model's training distribution), the range of the energy filter's squared scale α² = (H − V′)/K′ "
             "(band at the defaults: 0.64–1.5625), the largest displacement of an atom in a stride, and how many "
             "frames of the whole reference file are above the temperature ceiling of thermostatted runs "
             "(1.75 × 300 K).", "",
             "| model | strides | rejected | α² 0.1 % / 50 % / 99.9 % | α² range | max displacement (nm) | "
             "frames above the ceiling (hottest, K) |", "|---|---:|---:|---|---|---:|---|"]
    for model, row in sorted(data["models"].items()):
        p = row["alpha2_percentiles"]
        lo, hi = row["alpha2_range"]
        lines.append(f"| {model} | {row['strides']} | {row['rejected']} | {p['0.1']:.3f} / {p['50']:.3f} / "
                     f"{p['99.9']:.3f} | {lo:.3f} – {hi:.3f} | {row['max_displacement_nm']:.3f} | "
                     f"{row['reference_frames_above_ceiling']} of {row['reference_frames']} "
                     f"({row['reference_max_temperature_K']:.0f}) |")
    stack = next(iter(data["models"].values()))["stack"]
    return lines + ["", _stack_line(stack), ""]


def render_speed(data: Dict, name: str) -> List[str]:
    strides = data["flashmd"]["strides_ps"]
    direct = data.get("mode") == "direct"
    where = f"PyTorch only on {data['device']}" if direct else f"OpenMM {data['platform']} platform"
    title = f"### FlashMD vs MLIP-MD, {where} (`{name}`)"
    if direct:
        what = ("Time per simulated ps from the bare PyTorch calls: MLIP energy + forces (forward + backward) per "
                "0.5 fs MLIP-MD step against stride-model forward + MLIP energy forward per FlashMD stride.")
    else:
        what = ("Wall time per simulated ps of MLIP-MD (`LangevinMiddleIntegrator`, 0.5 fs) and of "
                "`FlashMDIntegrator` (\"O F E O\", energy filter on the MLIP `TorchForce` group), same MLIP, "
                "interleaved repeats in one run.")
    models = data["models"]
    lines = [title, "", what + f" PET stride model ({models['stride_model_parameters']} parameters) and PET MLIP "
             f"({models['mlip_parameters']} parameters), default hypers, {models['dtype']}, untrained weights "
             "(timing only).", ""]
    limits = not direct and all("limit" in row for row in data["results"])
    columns = (["atoms", "MLIP-MD (s/ps)"] + [f"FlashMD {s * 1000:g} fs (s/ps)" for s in strides]
               + [f"speedup {s * 1000:g} fs" for s in strides]
               + ([f"limit L {s * 1000:g} fs" for s in strides] + ["speedup / L"] if limits else [])
               + ["peak RSS (MiB)"])
    lines += ["| " + " | ".join(columns) + " |", "|" + "---:|" * len(columns)]
    for row in data["results"]:
        m = row["methods"]
        cells = [str(row["n_atoms"]), f"{m['mlip_md']['wall_s_per_simulated_ps']:.3g}"]
        cells += [f"{m[f'flashmd_{s:g}']['wall_s_per_simulated_ps']:.3g}" for s in strides]
        cells += [f"{row['speedup'][f'{s:g}']:.1f}×" for s in strides]
        if limits:
            cells += [f"{row['limit'][f'{s:g}']:.1f}×" for s in strides]
            cells.append(" / ".join(f"{row['speedup_over_limit'][f'{s:g}']:.2f}" for s in strides))
        cells.append(f"{max(v.get('peak_rss_mib', 0.0) for v in m.values()):.0f}")
        lines.append("| " + " | ".join(cells) + " |")
    exps = data.get("scaling_exponents") or {}
    fitted = [f"{k.replace('_', ' ')} {v:.2f}" for k, v in exps.items() if v is not None and not k.startswith("bare_")]
    if fitted:
        lines += ["", "Fitted exponents of time per step in N: " + "; ".join(fitted) + "."]
    if limits:
        lines += ["", "Limit L: the bare PyTorch calls' speed-up, MLIP forward + backward per 0.5 fs against stride "
                      "forward + energy-only MLIP forward per stride (issue 14: the measured speed-up should reach "
                      "0.9 L)."]
    calls = [r for r in data["results"] if any("call_s" in v for v in r["methods"].values())]
    if calls:
        lines += ["", "Steps are timed inside a run (`step(3k)` minus `step(k)`); each `step()` call also pays a start "
                      "(MLIP-MD: the forces of the new state; FlashMD: the filter's energy before the first stride), "
                      "in s per call: " + "; ".join(
                          f"{r['n_atoms']} atoms: " + ", ".join(f"{k.replace('_', ' ')} {v['call_s']['median']:.3g}"
                                                               for k, v in r["methods"].items() if "call_s" in v)
                          for r in calls) + "."]
    overhead = [r.get("integrator_overhead") for r in data["results"] if r.get("integrator_overhead")]
    if overhead:
        lines += ["", "Integrator overhead (OpenMM step / bare PyTorch calls), per size: " + "; ".join(
            f"{r['n_atoms']} atoms: " + ", ".join(f"{k} {v:.2f}" for k, v in r["integrator_overhead"].items())
            for r in data["results"] if r.get("integrator_overhead")) + "."]
    faulting = []
    for r in data["results"]:
        cells = [f"{k.replace('_', ' ')} {v['minor_faults_per_step']['median']:.3g}" for k, v in r["methods"].items()
                 if (v.get("minor_faults_per_step") or {}).get("median", 0) > 0]
        if cells:
            faulting.append(f"{r['n_atoms']} atoms: " + ", ".join(cells))
    if faulting:
        lines += ["", "Timed blocks still page-faulting after the settling rounds (median minor faults per step, where "
                      "not 0): " + "; ".join(faulting) + "."]
    goals = data.get("issue14_goals")
    if goals:
        lines += ["", "Issue 14's goals in this run: " + "; ".join(_issue14_goal(k, g) for k, g in goals.items()) + "."]
    lines += ["", _stack_line(data["stack"]), ""]
    earlier = sorted((RESULTS / "speed_runs").glob("*.json")) if not direct else []
    if earlier:
        lines += _speed_run_history([(f"`speed_runs/{p.name}`", json.loads(p.read_text())) for p in earlier])
    return lines


def _speed_run_history(runs: List[tuple]) -> List[str]:
    """A table of issue 14's goals in each earlier OpenMM-mode run of ``benchmarks/speed.py`` (worst
    value, ✓ where met), judged as the run itself would be (:func:`issue14_goals`)."""
    lines = ["Issue 14's goals in the earlier runs of `benchmarks/speed.py` (`benchmarks/results/speed_runs/`; "
             "worst value over sizes and strides, ✓ met, ✗ not met, — not judged: one size has no exponent):", "",
             "| run | atoms | repeats | wall (s) | step / bare calls ≤ 1.05 | speed-up / L ≥ 0.9 | exponent gap ≤ 0.05 |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for label, run in runs:
        strides = run["flashmd"]["strides_ps"]
        goals = issue14_goals(run["results"], run.get("scaling_exponents") or {}, strides) or {}
        cells = []
        for key, spec in (("step_over_bare", ".3f"), ("speedup_over_limit", ".3f"), ("exponent_gap", "+.3f")):
            goal = goals.get(key)
            cells.append("—" if goal is None else f"{goal['worst']:{spec}} {'✓' if goal['met'] else '✗'}")
        atoms = ", ".join(str(r["n_atoms"]) for r in run["results"])
        lines.append(f"| {label} | {atoms} | {run['repeats']} | {run['total_wall_s']:.0f} | " + " | ".join(cells) + " |")
    return lines + [""]


def _issue14_goal(key: str, goal: Dict) -> str:
    """One goal of ``benchmarks/speed.py``'s ``issue14_goals``: its limit, worst value and where, verdict."""
    name, relation, spec = {"step_over_bare": ("OpenMM step / bare calls", "≤", ".2f"),
                            "speedup_over_limit": ("speed-up / L", "≥", ".2f"),
                            "exponent_gap": ("FlashMD exponent − bare stride exponent", "within ±", "+.3f")}[key]
    where = (f"{goal['n_atoms']} atoms, " if "n_atoms" in goal else "") + f"{goal['stride_ps'] * 1000:g} fs"
    return (f"{name} {relation} {goal['limit']:g}: worst {goal['worst']:{spec}} ({where}), "
            + ("met" if goal["met"] else "**not met**"))


def render_stiff_bond_learning(data: Dict, name: str) -> List[str]:
    lines = [f"### Learning a stiff bond: radial basis on/off (`{name}`)", "",
             f"Carbon dimers with k = {data['k_kjmol_nm2']:g} kJ/mol/nm², {data['stride_ps'] * 1000:g} fs stride, "
             f"the tests' tiny PET trained {data['steps']} steps; improvement over free flight (Δq) and over "
             "unchanged velocities (v′) on held-out segments.", "",
             "| n_radial | seed | best validation loss | Δq improvement | v′ improvement |", "|---:|---:|---:|---:|---:|"]
    for row in data["results"]:
        lines.append(f"| {row['n_radial']} | {row['seed']} | {row['best_val_loss']:.3f} | "
                     f"{row['dq_improvement']:.1f}× | {row['v_improvement']:.1f}× |")
    lines += ["", _stack_line(data["stack"]), ""]
    return lines


def _failed(run: Dict, why: bool = False) -> str:
    """The suffix `` (failed at T ps)`` for a cell of a run that failed (empty otherwise);
    ``why``: followed by the first clause of its error."""
    if run.get("failed_at_ps") is None:
        return ""
    reason = (run.get("error") or "").split(": ", 1)[-1].split(" (", 1)[0] if why else ""
    return f" (failed at {run['failed_at_ps']:.3g} ps{': ' + reason if reason else ''})"


def render_validation(data: Dict, name: str) -> List[str]:
    """``validation.json`` from ``benchmarks/validate.py summarize`` (the per-model files in
    ``results/validation/`` are not globbed by :func:`render_all`)."""

    def temperature(run: Dict) -> str:
        if not run:
            return "—"
        if run.get("failed_at_ps") is not None and not run.get("temperature_K"):
            return f"failed at {run['failed_at_ps']:.3g} ps"
        temps = run.get("temperature_K") or {}
        overall = _fmt((temps.get("all") or {}).get("dev_target"), "+.1f")
        # elements against reference MD's per-element temperature (with constraints it is not 300 K)
        devs = {k: v.get("dev_reference", v.get("dev_target")) for k, v in temps.items() if k != "all"}
        devs = {k: d for k, d in devs.items() if d is not None}
        worst = max(devs, key=lambda k: abs(devs[k])) if devs else None
        return (f"{overall} / {worst} {devs[worst]:+.1f}" if worst else overall) + _failed(run)

    def fallback_cell(m: Dict) -> str:
        runs = [(m.get("nvt") or {}).get("filter"), (m.get("nvt") or {}).get("no_filter"), m.get("nve"),
                (m.get("npt") or {}).get("flashmd")]
        shares = [(run or {}).get("fallback") for run in runs]
        if not any(shares):
            return "off"
        return " / ".join(_fmt(x["fallback_fraction"], ".0%") if x else "—" for x in shares)

    lines = [f"### Validation against reference MD (`{name}`)", "",
             "Trained stride models on the OpenMM CPU platform against Langevin MD (`LangevinMiddleIntegrator` at the "
             "reference timestep) with the same classical potential, 300 K, friction 1/ps (FlashMD too unless the "
             "row says otherwise; goals are judged at 1/ps) "
             "(`benchmarks/validate.py`; plots and details in `benchmarks/results/validation/summary.md`). "
             "ΔT: kinetic temperature overall minus 300 K / of the worst element minus reference MD's, NVT with "
             "the energy filter "
             "(\"O F E O\") and without (\"O F O\"); RDF: integrated |Δg| of O–O; density: NpT at 1 bar, FlashMD "
             "vs reference; JS: Ramachandran Jensen–Shannon divergence (nats, 36×36 bins); NVE: T(end) − T(start) "
             "without filter (\"F\"); clamped: strides where the energy filter's scale hit its bounds (NVT with "
             "filter); fallback: share of strides the stride monitor rejected and integrated with MD instead "
             "(runs with the monitor: NVT with filter / without / NVE / NpT); speedup: reference MD s/ps ÷ FlashMD "
             "s/ps (NVT with filter, fallback strides included). A run \"fails\" when its temperature passes 2 × "
             "300 K.", "",
             "| model | stride (fs) | lengths | ΔT filter (K) | clamped | ΔT no filter (K) | RDF O–O (%) | density (%) | "
             "JS | NVE ΔT (K) | stability | fallback | speedup |",
             "|---|---:|---|---|---:|---|---:|---:|---:|---:|---|---|---:|"]
    for model, m in sorted(data.get("models", {}).items()):
        nvt = m.get("nvt") or {}
        nve = m.get("nve") or {}
        stab = m.get("stability") or {}
        if not stab.get("ran"):
            stability = "—"
        elif stab.get("stable"):
            stability = f"stable {stab.get('length_ps'):g} ps"
        else:
            stability = f"failed at {_fmt(stab.get('failed_at_ps'), '.3g')} ps"
        nve_cell = _fmt(nve.get("T_drift_K"), "+.1f") + _failed(nve)
        npt = (m.get("npt") or {}).get("flashmd") or {}  # a failed run's density: the part before the failure
        density_cell = _fmt(npt.get("relative_difference_percent"), "+.2f") + _failed(npt)
        lines.append(" | ".join([
            f"| {model}" + (f" (FlashMD friction {m['collision_rate_per_ps']:g}/ps)"
                            if m.get("collision_rate_per_ps", 1.0) != 1.0 else ""),
            f"{m['stride_ps'] * 1000:g}", str(m.get("lengths_mode")),
            temperature(nvt.get("filter")),
            _fmt(((nvt.get("filter") or {}).get("filter") or {}).get("clamped_fraction"), ".0%"),
            temperature(nvt.get("no_filter")),
            _fmt(((m.get("rdf") or {}).get("O-O") or {}).get("difference_percent"), ".2f"),
            density_cell,
            _fmt((m.get("ramachandran") or {}).get("js_divergence"), ".4f"),
            nve_cell, stability, fallback_cell(m), _fmt((m.get("cost") or {}).get("speedup"), ".2f", "×")]) + " |")
    lines += ["", "Goals (issue 15's, judged on these JSON files): the must-reach and aim thresholds, each met, "
              f"**not met** (the value is beyond it), or not resolved (within it, but not by {GOAL_CONFIDENCE:g} "
              "standard errors: the runs are too short to tell); temperatures from the 1 ns stability run "
              "where it recorded them; the blog protocol's rows from `blog_nve.json`, the default `simulate` "
              "report's from `trust_check_power-water-rigid-16fs.json`.", "",
              "| goal | model | value | must reach | aim | details |", "|---|---|---:|---|---|---|"]
    for goal in data.get("goals", []):
        lines.append(" | ".join([f"| {goal['text']}", goal.get("model") or "—", *goal_cells(goal), goal.get("note") or ""])
                     + " |")
    lines += ["", _stack_line(data["stack"]), ""]
    return lines


def render_friction_scan(data: Dict, name: str) -> List[str]:
    ref_t = data.get("reference_temperature_K") or {}
    elements = sorted(k for k in ref_t if k != "all")
    window = data.get("diffusion_fit_window_ps") or []
    lines = [f"### {data['model']}: Langevin friction against equipartition and dynamics (`{name}`)", "",
             f"FlashMD NVT with the energy filter (\"O F E O\"), {data['lengths']['nvt_ps']:g} ps at each friction "
             f"(`benchmarks/validate.py friction`, {data['lengths_mode']} lengths). T: kinetic temperature minus "
             "reference MD's (per element: " + ", ".join(f"{e} {ref_t[e]['mean']:.1f} K" for e in elements) +
             "); D(O): oxygen self-diffusion from the mean-square displacement"
             + (f" over {window[0]:g}–{window[1]:g} ps" if window else "") +
             ", FlashMD and reference MD at the same friction (friction slows reference MD too; its 1/ps "
             "row is the least perturbed)." + (f" Plot: `benchmarks/results/{data['plot']}`." if data.get("plot") else ""),
             "",
             "| friction (1/ps) | ΔT all (K) | " + " | ".join(f"ΔT {e} (K)" for e in elements) +
             " | clamped | RDF O–O (%) | D(O) FlashMD (nm²/ps) | D(O) reference (nm²/ps) |",
             "|" + "---:|" * (6 + len(elements))]
    for row in data["rates"]:
        run = row["flashmd"]
        temps = run.get("temperature_K") or {}
        cells = [f"{row['collision_rate_per_ps']:g}", _fmt((temps.get("all") or {}).get("dev_reference"), "+.1f")
                 + _failed(run)]
        cells += [_fmt((temps.get(e) or {}).get("dev_reference"), "+.1f") for e in elements]
        cells += [_fmt((run.get("filter") or {}).get("clamped_fraction"), ".0%"),
                  _fmt(((run.get("rdf") or {}).get("O-O") or {}).get("difference_percent"), ".2f"),
                  _fmt(run.get("diffusion_O_nm2_per_ps"), ".2e"),
                  _fmt(row["reference"].get("diffusion_O_nm2_per_ps"), ".2e")]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", _stack_line(data["stack"]), ""]
    return lines


def _curve_cells(row: Dict) -> str:
    """Δq, v' RMSE and KE ratio cells of one learning-curve row, per element."""
    elements = row["per_element"]
    return " | ".join(", ".join(f"{e} {v[key]:{spec}}" for e, v in elements.items())
                      for key, spec in (("dq_rmse", ".5f"), ("v_rmse", ".3f"), ("kinetic_energy_ratio", ".3f")))


def _dynamics_cells(dyn: Optional[Dict]) -> str:
    """Outcome and second-half temperatures (K) of a short NVT run (``learning_curves.dynamics``)."""
    dyn = dyn or {}
    if dyn.get("failure"):
        outcome = f"failed at {dyn['completed_ps']:.3g} ps"
    elif dyn:
        outcome = (f"{dyn['duration_ps']:g} ps, {len(dyn['failed_checks'])} trust check(s) failed, "
                   f"{100 * (dyn['clamped_fraction'] or 0):.1f} % clamped")
    else:
        outcome = "—"
    temps = ", ".join(f"{e} {t:.0f}" for e, t in (dyn.get("temperature_second_half_K") or {}).items()) or "—"
    return f"{outcome} | {temps}"


def render_learning_curves(data: Dict, name: str) -> List[str]:
    lines: List[str] = []
    for ablation, runs in sorted(data["ablations"].items()):
        common = min(run["curves"][-1]["step"] for run in runs.values())
        lines += [f"### Training ablation: {ablation} (`{name}`)", "",
                  f"Held-out errors per element at step {common} (the last step every run reached) and at each run's "
                  f"last step (curves: `benchmarks/results/learning-curves-{ablation}.png`), then a short NVT run of "
                  "the final model "
                  "(`openmm-flashmd simulate`, Langevin 1/ps with the filter; T of its second half). "
                  "`benchmarks/learning_curves.py` writes it.", "",
                  "| run | step | Δq RMSE (nm) | v′ RMSE (nm/ps) | KE ratio | wall (s), threads | dynamics | T (K) |",
                  "|---|---:|---|---|---|---|---|---|"]
        for label, run in runs.items():
            at_common = next(c for c in run["curves"] if c["step"] >= common)
            rows = [at_common] + ([run["curves"][-1]] if run["curves"][-1] is not at_common else [])
            for row in rows[:-1]:  # the common step, when the run went on: errors only
                lines.append(f"| {label} | {row['step']} | {_curve_cells(row)} | {row['wall_s']:.0f}, "
                             f"{row['threads']} | | |")
            row = rows[-1]
            lines.append(f"| {label} | {row['step']} | {_curve_cells(row)} | {row['wall_s']:.0f}, {row['threads']} | "
                         f"{_dynamics_cells(run.get('dynamics'))} |")
        stack = next(iter(runs.values()))["stack"]
        lines += ["", _stack_line(stack), ""]
    return lines


def render_sweep(data: Dict, name: str) -> List[str]:
    lines: List[str] = []
    for sweep_name, sweep in sorted(data["sweeps"].items()):
        settings = sweep["settings"]
        lines += [f"### Sweep at a fixed training budget: {sweep_name} (`{name}`)", "",
                  f"`benchmarks/sweep.py`: every configuration trains {settings['budget_s']:g} s of training loop "
                  f"on this machine (steps = budget × the step rate its probe measured, the learning-rate schedule "
                  f"ending with the budget; the overall rate, steps over the wall time validation included, shows "
                  f"how far the machine's load moved during the run) on `{Path(settings['data']).name}` at a {1000 * settings['stride_ps']:g} fs "
                  f"stride, from `{settings['hypers']}` with {' '.join(settings['common']) or 'no other overrides'}; "
                  "held-out errors per element of the exported model, then a short NVT run (`openmm-flashmd "
                  "simulate`, Langevin 1/ps with the filter; T of its second half).", "",
                  "| configuration | overrides | parameters | steps (probe; overall steps/s) | wall (s), threads | Δq RMSE (nm) | "
                  "v′ RMSE (nm/ps) | KE ratio | dynamics | T (K) |",
                  "|---|---|---:|---:|---|---|---|---|---|---|"]
        for label, run in sweep["configs"].items():
            own = " ".join(o for o in run["overrides"] if o not in settings["common"]) or "—"
            lines.append(f"| {label} | {own} | {run['parameters']} | {run['steps']} ({run['steps_per_s']:.2f}; {run['steps'] / run['wall_s']:.2f}) | "
                         f"{run['wall_s']:.0f}, {run['threads']} | {_curve_cells(run['held_out'])} | "
                         f"{_dynamics_cells(run.get('dynamics'))} |")
        lines += ["", *_sweep_comparison(sweep["configs"]), "", _stack_line(sweep["stack"]), ""]
    return lines


def _sweep_comparison(configs: Dict) -> List[str]:
    """The configurations' validation losses at the last step and the last wall time every one
    reached (linear interpolation in each curve), or nothing when a run lacks its curve."""
    curves = {label: run.get("val_loss_curve") for label, run in configs.items()}
    if not all(curves.values()):
        return []
    step = min(c[-1][0] for c in curves.values())
    wall = min(c[-1][1] for c in curves.values())

    def at(curve, column, x):
        xs, ys = [p[column] for p in curve], [p[2] for p in curve]
        return float(np.interp(x, xs, ys))

    cells = "; ".join(f"{label} {at(c, 0, step):.4f} / {at(c, 1, wall):.4f}" for label, c in curves.items())
    return [f"Validation loss at step {step} / at {wall:.0f} s of wall time, the furthest every configuration "
            f"reached (its cosine schedule not yet ended for the longer runs): {cells}."]


def render_blog_nve(data: Dict, name: str) -> List[str]:
    lines = [f"### The blog's NVE protocol: 258 rigid TIP3P waters (`{name}`)", "",
             "`benchmarks/blog_nve.py`: 258 rigid TIP3P waters from `Modeller.addSolvent` (PME, cutoff 0.9 nm), "
             "Langevin MD at 300 K, then 50 ps of NVE from that state: FlashMD without the energy filter "
             "(\"F\") and reference velocity Verlet (1 fs). T start / end: means over the first 1 ps and the last "
             "5 ps; drift: linear fit of the total energy. Goals (issue 15): |ΔT| ≤ 10 K and |drift| ≤ 5 kJ/mol/ps, "
             "judged on the mean over a model's start states (independent equilibrations; \"mean\" rows: ± the "
             "standard error). Plots: `benchmarks/results/blog-nve/`.", "",
             f"A goal met with more than {100 * MAX_FALLBACK_FRACTION:g} % of the strides run as fallback MD (the "
             "stride monitor, on by default) "
             "is the fallback's doing, not the model's: the table says so in bold.", "",
             "| model | stride (fs) | lengths | start | run | T start → end (K) | ΔT (K) | drift (kJ/mol/ps) | "
             "strides as MD | goals |",
             "|---|---:|---|---|---|---|---:|---:|---:|---|"]

    def share_cell(share: Optional[float], flashmd: bool) -> str:
        return f"{share:.0%}" if share is not None else ("—" if flashmd else "")

    for model, result in sorted(data["models"].items()):
        prefix = f"| {model} | {result['stride_ps'] * 1000:g} | {result['lengths_mode']} |"
        def goals(label: str) -> str:
            if not label.startswith("FlashMD"):
                return ""
            fallback_note = met_only_by_fallback(result["summary"][label]["fallback_fraction"])
            if result["goals_met"] and fallback_note:
                return f"**{fallback_note}**"
            return "met" if result["goals_met"] else "**not met**"

        def mean(stats: Dict, spec: str) -> str:
            if stats["mean"] is None:
                return "—"
            return f"{stats['mean']:{spec}}" + (f" ± {stats['sem']:.2g}" if stats["sem"] is not None else "")

        single = len(result["starts"]) == 1  # judged on its one run: the goals go into its rows
        for start in result["starts"]:
            for label, run in start["runs"].items():
                share = (run.get("fallback") or {}).get("fallback_fraction")
                lines.append(f"{prefix} {start['index']} | {label}{_failed(run, why=True)} | "
                             f"{run['T_start_K']:.1f} → {run['T_end_K']:.1f} | {run['T_drift_K']:+.1f} | "
                             f"{_fmt(run['energy_drift_kjmol_per_ps'], '.3g')} | "
                             f"{share_cell(share, label.startswith('FlashMD'))} | {goals(label) if single else ''} |")
        for label, summary in ({} if single else result["summary"]).items():
            lines.append(f"{prefix} mean of {summary['T_drift_K']['n']} | {label} | | "
                         f"{mean(summary['T_drift_K'], '+.1f')} | {mean(summary['energy_drift_kjmol_per_ps'], '.3g')} | "
                         f"{share_cell(summary['fallback_fraction'], label.startswith('FlashMD'))} | {goals(label)} |")
    stack = next(iter(data["models"].values()))["stack"]
    return lines + ["", _stack_line(stack), ""]


def render_molecule_motion(data: Dict, name: str) -> List[str]:
    def cell(entry: Optional[Dict]) -> str:
        return "—" if not entry else f"{entry['mean']:.1f} ± {entry['sem']:.1f}"

    lines = [f"### Translation and rotation of rigid water (`{name}`)", "",
             f"`benchmarks/molecule_motion.py`: the built-in `{data['system']}` (64 TIP3P waters, SETTLE) at "
             f"{data['temperature_K']:g} K, Langevin friction {data['collision_rate_per_ps']:g}/ps, "
             f"{data['lengths']['equil_ps']:g} ps of equilibration from the minimised structure, then "
             f"{data['lengths']['run_ps']:g} ps sampled every {1000 * data['lengths']['sample_ps']:g} fs; FlashMD with "
             f"the energy filter (\"{data['splitting']}\"), {data['threads']} OpenMM CPU thread(s). The molecules' "
             "translational and rotational temperatures (`openmm_flashmd.analysis.thermo.molecule_temperatures`) "
             "both equal the thermostat's in equilibrium; in rigid water the hydrogens' temperature is mostly rotation, the oxygens' mostly translation. "
             f"Means ± standard errors of {data['lengths']['blocks']} blocks (K).", "",
             "| run | seed | lengths | translation | rotation | H | O | all | wall s per simulated ps |",
             "|---|---:|---|---:|---:|---:|---:|---:|---:|"]
    for run in data["runs"]:
        motion, temps = run["molecule_temperature_K"], run["temperature_K"]
        lines.append(f"| {run['model']}{_failed(run, why=True)} | {run['seed']} | {data['lengths_mode']} | "
                     f"{cell(motion.get('translation'))} | {cell(motion.get('rotation'))} | {cell(temps.get('H'))} | "
                     f"{cell(temps.get('O'))} | {cell(temps.get('all'))} | "
                     f"{_fmt(run['wall_s'] / run['completed_ps'] if run['completed_ps'] else None, '.2f')} |")
    return lines + ["", _stack_line(data["stack"]), ""]


def render_nve_box_size(data: Dict, name: str) -> List[str]:
    sizes = list(next(iter(data["energy_change_per_water_kjmol"].values())))
    lengths = data["lengths"]
    cutoffs = sorted(set(data["cutoff_nm"].values()))
    cutoff = (f"cutoff {cutoffs[0]:.2f} nm at every size" if len(cutoffs) == 1 else
              "cutoff " + ", ".join(f"{c:.2f}" for c in data["cutoff_nm"].values()) + " nm")
    lines = [f"### NVE energy against box size (`{name}`)", "",
             f"`benchmarks/nve_box_size.py`: the built-in `{data['system']}` box at each size (PME, {cutoff}), "
             "minimised, "
             f"{lengths['equil_ps']:g} ps of Langevin MD at {data['temperature_K']:g} K, then {lengths['nve_ps']:g} ps "
             f"of NVE: FlashMD without the filter and without the stride monitor (\"{data['splitting']}\"), and velocity "
             f"Verlet at {data['reference_nve_timestep_ps'] * 1000:g} fs from the same state. Change of the total "
             f"energy from the start per water (kJ/mol), averaged over the last {lengths['end_ps']:g} ps: mean, range "
             "over the seeds and how many runs gained energy."
             + (" \"(no rotation)\": the same model from the same starts without the integrator's per-stride "
                "random rotation." if "off" in data.get("random_rotation", []) else ""), "",
             "| run | " + " | ".join(f"{n} waters" for n in sizes) + " |", "|---|" + "---:|" * len(sizes)]
    for model, by_size in data["energy_change_per_water_kjmol"].items():
        cells = [("—" if s["mean"] is None else f"{s['mean']:+.2f} ({s['min']:+.2f} to {s['max']:+.2f}; "
                  f"{s['positive']} of {s['runs']} > 0)") for s in by_size.values()]
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    return lines + ["", _stack_line(data["stack"]), ""]


def render_trust_check_power(data: Dict, name: str) -> List[str]:
    expected = ", ".join(f"{k} {v:.0f} K" for k, v in data["expected_K"].items())
    columns = " / ".join(data["expected_K"])
    if data.get("model"):
        title, runs = f"How often `{data['model']}` passes `simulate`'s temperature check", (
            f"`openmm-flashmd simulate --model {data['model']}` runs of `{data['system']}` (its defaults: NVT with "
            f"the filter, Langevin 1/ps; one run per seed)")
    else:
        title, runs = "How often reference MD passes `simulate`'s temperature check", (
            f"reference MD ({data['timestep_ps'] * 1000:g} fs, Langevin {data['friction_per_ps']:g}/ps) of "
            f"`{data['system']}` under `simulate`'s start protocol (200 iterations of minimisation, velocities "
            "drawn with the seed), one run per seed as long as the longest length, each shorter length judged on "
            "its first part")
    lines = [f"### {title} (`{name}`)", "",
             f"`benchmarks/trust_check_power.py`: {runs}, judged by the report's own check: the second half's mean "
             f"temperatures within {data['threshold_K']:g} K of {expected}, not judged where the window's standard "
             f"error (from its autocorrelation time) exceeds {data['threshold_K'] / data['confidence_standard_errors']:g}"
             " K. A check that exact dynamics fails is a check a model cannot pass by being right; the spread of the "
             "deviations across runs is what the runs' own standard errors should estimate.", "",
             f"| run (ps) | judged window (ps) | runs | within {data['threshold_K']:g} K | passed | failed | "
             f"not judged | SD of the deviations (K): {columns} | mean deviation (K): {columns} | "
             f"mean standard error (K): {columns} |",
             "|---:|---:|---:|---:|---:|---:|---:|---|---|---|"]
    for length in data["lengths"]:
        sds = " / ".join("-" if length["deviation_sd_K"][k] is None else f"{length['deviation_sd_K'][k]:.1f}"
                         for k in data["expected_K"])
        means = " / ".join(f"{length['deviation_mean_K'][k]:+.1f}" for k in data["expected_K"])
        errors = " / ".join(f"{length['mean_standard_error_K'][k]:.1f}" for k in data["expected_K"])
        lines.append(f"| {length['time_ps']:g} | {length['judged_window_ps']:g} | {len(length['runs'])} | "
                     f"{length['within_threshold_fraction']:.0%} | {length['passed_fraction']:.0%} | "
                     f"{length['failed_fraction']:.0%} | {length['not_judged_fraction']:.0%} | {sds} | {means} | "
                     f"{errors} |")
    if data.get("model"):
        lines += ["", "Runs that failed another trust check: " + ", ".join(
            f"{sum(bool(r['other_failed_checks']) for r in length['runs'])} of {len(length['runs'])} at "
            f"{length['time_ps']:g} ps" for length in data["lengths"]) + "."]
    note = f" ({data['threads_note']})" if data.get("threads_note") else ""
    if data.get("model"):  # every length is its own set of runs
        simulated = sum(length["time_ps"] * len(length["runs"]) for length in data["lengths"])
        wall = f" All runs: {simulated:g} ps in {data['wall_s']:.0f} s of wall time."
    else:
        wall = f" All runs: {data['wall_s']:.0f} s of wall time."
    return lines + ["", _stack_line(data["stack"]) + f" {data['threads']} OpenMM thread(s){note}.{wall}", ""]


def render_ramachandran_windows(data: Dict, name: str) -> List[str]:
    null = data["exact_dynamics"]
    window = f"{data['window_ns']:g} ns"
    lines = [f"### Ramachandran divergence against window length, {data['system']} (`{name}`)", "",
             f"`benchmarks/ramachandran_windows.py`: the validation's comparison (36 x 36 φ/ψ bins, JS divergence in "
             f"nats against the cached {data['reference_ps'] / 1000:g} ns reference MD run) applied to every disjoint "
             'window of longer runs from the validation\'s start state: FlashMD with the filter ("O F E O", 1/ps) and '
             "reference MD with other random seeds, whose windows are exact dynamics: they read what a perfect model "
             f"would on this comparison. Issue 15's goal: at most {data['goal_js']:g} at ≥ 1 ns. The cached run's own "
             f"two halves: {_fmt(data.get('reference_halves_js'), '.3f')}.", ""]
    if null["windows"]:
        lines += [f"Exact dynamics, {null['windows']} windows of {window}: mean {null['mean']:.3f}, range "
                  f"{null['min']:.3f}-{null['max']:.3f}, {null['share_above_goal']:.0%} above the goal.", ""]
    def shape(basins: Dict) -> str:
        return " | ".join([f"{basins['alpha_R']['population']:.1%}"] + [
            f"{basins[b]['phi_sd']:.0f} / {basins[b]['psi_sd']:.0f}" for b in ("alpha_R", "beta_PPII")])

    lines += ["Columns: the JS of each window; the mean JS over the disjoint windows of ⅛, ¼, ½ and all of the "
              "run (window length in ns: mean); the run's αR population and the standard deviations of φ / ψ "
              "within αR and within β/PPII (degrees), the basins' shape, which the JS also measures.", "",
              f"| run | length (ns) | JS of each {window} window | mean JS against window length | αR | "
              "φ / ψ SD, αR | φ / ψ SD, β/PPII |", "|---|---:|---|---|---:|---:|---:|",
              f"| cached reference MD | {data['reference_ps'] / 1000:g} | | | " + shape(data["reference_basins"]) + " |"]
    for run_name, run in data["runs"].items():
        by_length = ", ".join(f"{float(k) / 1000:g}: {v['mean']:.3f}" for k, v in run["js_by_window_ps"].items())
        label = f"{run_name} (exact)" if run["exact"] else run_name
        lines.append(f"| {label} | {run['length_ps'] / 1000:g} | " + ", ".join(f"{v:.3f}" for v in run["window_js"])
                     + f" | {by_length} | " + shape(run["basins"]) + " |")
    return lines + ["", _stack_line(data["stack"]) + " One OpenMM / torch thread per run.", ""]


def render_fault_injection(data: Dict, name: str) -> List[str]:
    summary = data["summary"]
    lines = [f"### Fault injection: killed runs resume to the same outputs (`{name}`)", "",
             f"Each command was killed {data['faults_per_signal']} times per signal at random moments while running "
             "and resumed "
             "with `--resume` (or started again with `--overwrite` where it said nothing could be resumed yet); the "
             "finished outputs are compared with an uninterrupted run (simulate: positions bit for bit and the log; "
             "generate: every HDF5 dataset; train: the model's weights and the log). "
             f"Platforms: {', '.join(f'{k} {v}' for k, v in data['platforms'].items())}; 1 thread; "
             f"{data['wall_s'] / 60:.0f} min in all.", "",
             "| command | signal | faults injected | restarts advised | unexpected errors | outputs identical |",
             "|---|---|---:|---:|---:|---|"]
    for command, runs in data["commands"].items():
        for sig in ("SIGKILL", "SIGINT"):
            row = runs[sig]
            lines.append(f"| {command} | {sig} | {row['faults_injected']} | {row['restarts_advised']} | "
                         f"{len(row['unexpected_errors'])} | {'yes' if row['identical'] else '**no**'} |")
    lines += ["", f"Data lost: {summary['data_lost']} of {summary['resumed_runs']} resumed runs.", "",
              _stack_line(data["stack"]), ""]
    return lines


def render_bad_inputs(data: Dict, name: str) -> List[str]:
    summary = data["summary"]
    lines = [f"### Bad inputs (`{name}`)", "",
             f"{summary['handled']} of {summary['cases']} bad inputs a new user stumbles on get a non-zero exit with "
             "one line (no traceback) and leave an existing run's files untouched.", "",
             "<details><summary>each input and its message</summary>", "",
             "| input | handled | message |", "|---|---|---|"]
    for row in data["cases"]:
        message = row["message"].replace("|", "\\|")
        message = re.sub(r"/tmp/[^/ ]+/", "…/", message)
        lines.append(f"| {row['case']} | {'yes' if row['handled'] else '**no**'} | {message} |")
    return lines + ["", "</details>", "", _stack_line(data["stack"]), ""]


def render_metatomic_speed(data: Dict, name: str) -> List[str]:
    lines = [f"### metatrain FlashMD through `openmm_flashmd.metatomic` against our PET (`{name}`)", "",
             f"{data['description']} Parameters: metatrain {data['parameters']['metatrain']}, ours "
             f"{data['parameters']['ours']}; {data['stride_fs']:g} fs stride; medians of {data['repeats']} calls, "
             "A and B interleaved in one run (`benchmarks/metatomic_speed.py`).", "",
             "| atoms | forward metatrain (ms) | forward ours (ms) | ratio | step metatrain (ms) | step ours (ms) | ratio |",
             "|---:|---:|---:|---:|---:|---:|---:|"]
    for row in data["rows"]:
        f, s, r = row["forward_ms"], row["step_ms"], row["ratio_metatrain_over_ours"]
        lines.append(f"| {row['n_atoms']} | {f['metatrain']:.1f} | {f['ours']:.1f} | {r['forward_ms']:.2f} | "
                     f"{s['metatrain']:.1f} | {s['ours']:.1f} | {r['step_ms']:.2f} |")
    return lines + ["", _stack_line(data["stack"]), ""]


def render_step_profile(data: Dict, name: str) -> List[str]:
    lines = [f"### Where a FlashMD step's time goes, {data['platform']} platform (`{name}`)", "",
             f"`FlashMDIntegrator` steps (\"O F E O\", {data['stride_ps'] * 1000:g} fs, {data['model']}, PET MLIP "
             "as the only potential) and their parts, each the median of "
             f"{data['repeats']} interleaved blocks of process CPU time, {data['threads']} torch thread(s) "
             "(`benchmarks/step_profile.py`). A `step(1)` call costs one step plus the call's own energy "
             "evaluation (the step cannot know whether the Context changed since the last call); a step inside "
             "a run costs `step(2)` − `step(1)` (\"in run\"), the call's own cost 2 `step(1)` − `step(2)`. "
             "Parts: the stride `TorchForce` through the stages of the staged protocol (probe; stride = stages "
             "1-2 minus the probe; velocity return = stages 1-3 minus stages 1-2), the MLIP energy alone as "
             "the filter asks for it (energy-only parameter at 1: no autograd graph) and the same through a "
             "force without that parameter (graph built and dropped, as before it existed), the thermostat "
             "(step minus the step without it); the bare PyTorch forwards under `torch.no_grad`. \"graph / "
             "no graph\" compares steps in a run on the two forces. Times in ms; derived parts are differences "
             "of medians and can come out negative on a shared machine.", "",
             "| atoms | step(1) call | step in run | call's own | probe | stride | velocity return | filter energy "
             "| filter energy, graph | thermostat | bare stride | bare energy | call / bare | in run / bare | "
             "graph / no graph, in run |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in data["results"]:
        ms = {k: v["median"] for k, v in row["cpu_ms"].items()}
        d = row["derived_cpu"]
        lines.append(f"| {row['n_atoms']} | {ms['step']:.1f} | {d['step_in_run']:.1f} | {d['call_overhead']:.1f} | "
                     f"{ms['probe']:.2f} | {d['stride']:.1f} | {d['velocity_return']:.2f} | "
                     f"{ms['filter_energy']:.1f} | {ms['filter_energy_graph']:.1f} | {d['thermostat']:.1f} | "
                     f"{ms['bare_stride_forward']:.1f} | {ms['bare_energy_forward']:.1f} | "
                     f"{d['overhead_ratio']:.2f} | {d['overhead_ratio_in_run']:.2f} | "
                     f"{d['energy_only_gain_in_run']:.2f} |")
    exps = data["scaling_exponents_cpu"]
    lines += ["", "Fitted exponents of the CPU times (time ∝ N^a): " + ", ".join(
        f"{k.replace('_', ' ')} {v:.2f}" for k, v in exps.items() if v is not None and k in
        ("step", "step_pair", "probe_stride", "filter_energy", "filter_energy_graph", "bare_stride_forward",
         "bare_energy_forward")) + ".", "", _stack_line(data["stack"]), ""]
    return lines


def render_malloc_tuning(data: Dict, name: str) -> List[str]:
    lines = [f"### glibc malloc tuning and the FlashMD step (`{name}`)", "",
             "`openmm_flashmd.performance.tune_malloc()` (every TorchForce builder calls it) against glibc's defaults "
             "(`OPENMM_FLASHMD_MALLOC_TUNING=0`): one FlashMD step (\"O F E O\", 16 fs, PET stride model and PET "
             f"MLIP, random weights), child processes alternated, medians of {data['rounds']} processes × "
             f"{data['steps']} steps, {data['threads']} torch thread(s) (`benchmarks/malloc_tuning.py`). Per step.",
             "", "| atoms | wall (ms) default → tuned | system CPU (ms) | user CPU (ms) | minor page faults | "
             "wall ratio | CPU ratio |", "|---:|---|---|---|---|---:|---:|"]
    for row in data["results"]:
        u, t, r = row["untuned"], row["tuned"], row["ratio_tuned_over_untuned"]
        lines.append(f"| {row['n_atoms']} | {u['wall_ms']:.0f} → {t['wall_ms']:.0f} | {u['sys_ms']:.0f} → "
                     f"{t['sys_ms']:.0f} | {u['user_ms']:.0f} → {t['user_ms']:.0f} | {u['minor_faults']:.0f} → "
                     f"{t['minor_faults']:.0f} | {r['wall_ms']:.2f} | {r['cpu_ms']:.2f} |")
    return lines + ["", _stack_line(data["stack"]), ""]


def render_pet_forward_ab(data: Dict, name: str) -> List[str]:
    lines = [f"### PET forward before and after (`{name}`)", "",
             f"The scripted stride model with the `{data['model']}` weights under the PET code of `{data['base']}` (A) "
             f"and of `{data['head']}` (B), interleaved, medians of {data['repeats']} calls, {data['threads']} torch "
             "thread(s), malloc tuned on both sides (`benchmarks/pet_forward_ab.py`).", "",
             "| atoms | wall A (ms) | wall B (ms) | thread CPU A (ms) | thread CPU B (ms) | B/A wall | B/A CPU | "
             "max Δ positions (nm) | max Δ velocities (nm/ps) |", "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in data["results"]:
        w, c, r, d = row["wall_ms"], row["thread_cpu_ms"], row["ratio_b_over_a"], row["max_abs_difference"]
        lines.append(f"| {row['n_atoms']} | {w['A']:.1f} | {w['B']:.1f} | {c['A']:.1f} | {c['B']:.1f} | "
                     f"{r['wall']:.2f} | {r['thread_cpu']:.2f} | {d['positions_nm']:.1e} | "
                     f"{d['velocities_nm_per_ps']:.1e} |")
    return lines + ["", _stack_line(data["stack"]), ""]


PROFILE_PARTS = [("neighbor_list", "neighbour list"), ("attention.qkv", "qkv projection"),
                 ("attention.core", "attention core"), ("attention.out", "attention out"),
                 ("feedforward", "feed-forward"), ("norms", "norms"), ("gnn_other", "edge embedding, messages"),
                 ("backbone_other", "geometry features"), ("heads_and_rest", "heads, checks")]


def render_pet_profile(data: Dict, name: str) -> List[str]:
    model = data["model"]
    what = (f"the bundled `{model['name']}`" if model.get("name") else "the default hypers (random weights)")
    lines = [f"### Where the PET forward's time goes: {what} (`{name}`)", "",
             f"{data['description']}; {model['parameters']} parameters, cutoff {model['hypers']['cutoff']} nm. "
             f"Each part's CPU time is its minimum over {data['repeats']} profiled calls "
             "(`benchmarks/pet_profile.py`); shares of their sum. \"attention core\": padding, the fused "
             "`scaled_dot_product_attention` kernel, gathering and dividing. The last two columns time the qkv "
             "projection alone at the trained width and at the aligned width the model now evaluates it at.", "",
             "| atoms | tokens | forward (ms) | " + " | ".join(label for _, label in PROFILE_PARTS)
             + " | top operators (self ms) | qkv projection trained → aligned width (ms) |",
             "|---:|---:|---:|" + "---:|" * len(PROFILE_PARTS) + "---|---|"]
    for row in data["results"]:
        share = row["parts_fraction"]
        ops = ", ".join(f"{op['op'].replace('aten::', '').replace('_scaled_dot_product_flash_attention_for_cpu', 'sdpa')}"
                        f" {op['self_ms']:.0f}" for op in row["top_operators_self_ms"][:3])
        projection = row["qkv_projection_ms"]
        lines.append(f"| {row['n_atoms']} | {row['n_tokens']} | {row['unprofiled_ms']:.1f} | "
                     + " | ".join(f"{100 * share[key]:.0f} %" for key, _ in PROFILE_PARTS)
                     + f" | {ops} | {projection['trained_width']:.1f} ({projection['widths'][0]}) → "
                     f"{projection['aligned_width']:.1f} ({projection['widths'][1]}) |")
    return lines + ["", _stack_line(data["stack"]), ""]


def render_memory_watch(data: Dict, name: str) -> List[str]:
    lines = [f"### Resident memory of long runs (`{name}`)", "",
             "`benchmarks/memory_watch.py`: identical FlashMD runs started together (\"O F E O\", 300 K, stride "
             "monitor on, CPU platform, one thread each, the same seeds); resident set size (VmRSS) at regular "
             "intervals and its growth (least-squares slope). Identical runs must also give identical "
             "kinetic energies.", "",
             "| run | code | runs at once | strides | RSS per sample (MiB) | growth (MiB per 1000 strides) | wall (s) |",
             "|---|---|---:|---:|---|---|---:|"]
    for label, result in sorted(data["models"].items()):
        rss = "; ".join(", ".join(f"{s['rss_mib']:.0f}" for s in run["samples"]) for run in result["runs"])
        growth = ", ".join(f"{run['growth_mib_per_1000_strides']:.1f}" for run in result["runs"])
        lines.append(f"| {label} | {result.get('commit') or '—'} | {result['concurrent_runs']} | {result['strides']} | "
                     f"{rss} | {growth} | "
                     f"{result['wall_s']:.0f} |")
    stack = next(iter(data["models"].values()))["stack"]
    return lines + ["", _stack_line(stack), ""]


def render_onpolicy_errors(data: Dict, name: str) -> List[str]:
    lines = [f"### Errors on the states the model visits (`{name}`)", "",
             "`benchmarks/onpolicy_errors.py`: each start (a random frame of the training data) runs FlashMD for "
             "the burst (NVT, Langevin 1/ps with the energy filter, no fallback MD), then reference MD records three "
             "strides from where it ended; the model's errors against it and its kinetic-energy ratio (after the "
             "constraint projection when the System has constraints: Δq in nm, v′ in nm/ps; in a molecular liquid also "
             "of the molecules' translation and rotation) and its energy error per "
             "stride (kJ/mol, mean ± sd, after the projection), next to the same on reference-MD states of the data. "
             "A model whose errors differ on its own states is one whose held-out numbers do not predict its runs.",
             "", "| model | states | pairs | Δq RMSE | v′ RMSE | KE ratio | energy error per stride: total "
             "(potential, kinetic) |", "|---|---|---:|---|---|---|---|"]
    for model, result in sorted(data["models"].items()):
        for label, entry in (("reference MD", result["reference"]),
                             (f"after {result['burst_ps']:g} ps of FlashMD", result["onpolicy"])):
            elements = entry["per_element"]
            dq = ", ".join(f"{z} {e.get('dq_constrained_rmse', e['dq_rmse']):.5f}" for z, e in elements.items())
            v = ", ".join(f"{z} {e.get('v_constrained_rmse', e['v_rmse']):.3f}" for z, e in elements.items())
            ke = ", ".join(f"{z} {e.get('kinetic_energy_ratio_constrained', e['kinetic_energy_ratio']):.3f}"
                           for z, e in elements.items())
            motion = entry.get("molecule_kinetic_energy_ratio")
            if motion:
                ke += "; molecules' " + ", ".join(f"{k} {r:.4f}" for k, r in motion.items())
            energy = entry["energy_error_per_stride"]
            split = (f"; potential of the molecules' centres alone {energy['potential_centres_only']['mean']:+.2f}, "
                     f"orientations alone {energy['potential_orientations_only']['mean']:+.2f}"
                     if "potential_orientations_only" in energy else "")
            lines.append(f"| {model} | {label} | {entry['n_pairs']} | {dq} | {v} | {ke} | "
                         f"{energy['total']['mean']:+.2f} ± {energy['total']['sd']:.2f} "
                         f"({energy['potential']['mean']:+.2f}, {energy['kinetic']['mean']:+.2f}){split} |")
    stack = next(iter(data["models"].values()))["stack"]
    return lines + ["", _stack_line(stack), ""]


def render_guess_errors(data: Dict, name: str) -> List[str]:
    stride_fs = data["stride_ps"] * 1000
    lines = [f"### The guesses alone against reference MD, {stride_fs:g} fs (`{name}`)", "",
             f"`benchmarks/guess_errors.py`: from {len(data['segments'])} segments of `{Path(data['data']).name}` "
             f"({data['frames_per_segment_used']} frames each), the state one stride later against free flight, "
             "the frozen-force Verlet guess and the multiple-time-step guess (the forces named recomputed at every "
             "substep, the rest frozen), computed by the program the integrator and the training data run. RMS per "
             "element; Δq in nm, v′ in nm/ps. No model is involved.", "",
             "| guess | substeps | recomputed per substep | Δq RMSE | v′ RMSE |", "|---|---:|---|---|---|"]
    for row in data["rows"]:
        dq = ", ".join(f"{z} {e:.2e}" for z, e in row["dq_rmse"].items())
        v = ", ".join(f"{z} {e:.3f}" for z, e in row["v_rmse"].items())
        fast = ", ".join(f.replace("Force", "") for f in row["fast_forces"]) or "—"
        lines.append(f"| {row['guess']} | {row['substeps'] or '—'} | {fast} | {dq} | {v} |")
    return lines + ["", f"{data['wall_s']:.0f} s. " + _stack_line(data["stack"]), ""]


RENDERERS: Dict[str, Callable[[Dict, str], List[str]]] = {
    "guess_errors": render_guess_errors,
    "metatomic_speed": render_metatomic_speed,
    "bad_inputs": render_bad_inputs,
    "fault_injection": render_fault_injection,
    "blog_nve": render_blog_nve,
    "molecule_motion": render_molecule_motion,
    "nve_box_size": render_nve_box_size,
    "memory_watch": render_memory_watch,
    "learning_curves": render_learning_curves,
    "sweep": render_sweep,
    "onpolicy_errors": render_onpolicy_errors,
    "stiff_bond_learning": render_stiff_bond_learning,
    "speed": render_speed,
    "pet_forward": render_pet_forward,
    "integrator_overhead": render_integrator_overhead,
    "step_profile": render_step_profile,
    "pet_forward_ab": render_pet_forward_ab,
    "pet_profile": render_pet_profile,
    "malloc_tuning": render_malloc_tuning,
    "fallback_thresholds": render_fallback_thresholds,
    "validation": render_validation,
    "friction_scan": render_friction_scan,
    "trust-check-power": render_trust_check_power,
    "ramachandran_windows": render_ramachandran_windows,
}


def render_all() -> str:
    """Markdown of every ``RESULTS/*.json`` with a renderer (top level only: the per-model
    validation files in ``RESULTS/validation/`` are merged into ``validation.json``)."""
    lines: List[str] = []
    for path in sorted(RESULTS.glob("*.json")):
        data = json.loads(path.read_text())
        renderer = RENDERERS.get(data.get("benchmark", "")) if isinstance(data, dict) else None
        if renderer is not None and not data.get("exclude_from_readme"):
            lines += renderer(data, path.name)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--print", action="store_true", help="print the markdown instead of editing README.md")
    args = parser.parse_args()
    markdown = render_all()
    if args.print:
        print(markdown)
        return
    readme = ROOT / "README.md"
    text = readme.read_text()
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(head + START + "\n" + markdown + "\n" + END + tail)
    print(f"updated {readme}")


if __name__ == "__main__":
    main()
