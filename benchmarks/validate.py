"""Validate the bundled stride models against reference MD (the README's validation table).

    python benchmarks/validate.py run MODEL [--system NAME] [--out DIR] [--lengths quick|full]
                                            [--overwrite] [--work-dir DIR] [--set KEY=VALUE ...] [--resume]
    python benchmarks/validate.py reference SYSTEM [--out DIR] [--lengths quick|full]
    python benchmarks/validate.py summarize [--out DIR]
    python benchmarks/validate.py npt (MODEL | reference --system NAME) --ps LENGTH --seed SEED
    python benchmarks/validate.py nvt (MODEL | reference --system NAME) --ps LENGTH --seed SEED
    python benchmarks/validate.py compare --system NAME [--out DIR]
    python benchmarks/validate.py friction MODEL [--rates 1 10 30 100] [--lengths quick|full]

A thin driver of the package's validation (:mod:`openmm_flashmd.validation`, also behind
``openmm-flashmd validate``; its module docstrings describe every measurement). ``run``
validates one stride model (a bundled name such as ``water-rigid-16fs`` or a file) on a
built-in system (default: the model name without its ``-<N>fs`` suffix) and writes
``DIR/<model>.json`` (+ a small ``.npz`` of series and PNG plots; default DIR
``benchmarks/results/validation``), with the stability run for the largest bundled stride of
the system (or ``--stability``). Reference MD is cached once per system as
``DIR/reference-<system>.json`` + ``.npz`` (a cache with other settings is replaced only with
``--overwrite``); phases and trajectories go to ``--work-dir`` (default
/tmp/flashmd-validation), never into the repository; ``--resume`` reuses the phases an
interrupted run of the same model and settings finished there and continues its stability run
from the last checkpoint (every 50 ps), so a 10 ns run can span several sittings; with other NpT
lengths (``--set npt_ps=400``) it reuses every other phase of a finished validation and runs the
NpT phase again, so a density the runs did not resolve is measured longer without repeating the
hours of NVT (the result's ``phases_rerun_with_new_lengths`` says so, ``overrides`` gives the lengths).

``friction`` runs the filtered NVT at several Langevin frictions and writes
``benchmarks/results/friction-<model>.json``: per-element temperatures against reference
MD, filter clamps, O-O RDF and the water-O self-diffusion coefficient (MSD slope over
1-5 ps) of FlashMD and of reference MD at the same friction. A strong local thermostat
restores equipartition that a damping stride model breaks, at the price of dynamics; this
measures both sides.

``npt`` and ``nvt`` add an independent run (another seed, from the same start state) to a
finished validation's NpT phase or filtered NVT run (temperatures, RDFs), or to reference MD's
NpT or NVT, pool it with the runs before and
compare every model that used the reference again (:mod:`openmm_flashmd.validation.pooling`): a
comparison the first runs left unresolved is measured longer without repeating the rest.
``compare`` compares every model result of a system with its reference again (what ``npt`` and
``nvt`` do after a reference run), e.g. after the comparisons themselves changed.

``summarize`` merges every ``DIR/<model>.json`` into ``DIR/../validation.json`` (rendered
into the README by ``benchmarks/report.py``) and writes ``DIR/summary.md`` with the goals.

Units: nm, ps, K, kJ/mol, g/cm^3, Da.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import GOAL_CONFIDENCE, goal_cells, met_only_by_fallback, stack_info, write_json  # noqa: E402

import numpy as np  # noqa: E402

from openmm_flashmd.validation import compare, plots, runs  # noqa: E402
from openmm_flashmd.validation.protocol import LENGTHS, protocol_lengths, validate  # noqa: E402
from openmm_flashmd.validation.checks import nested_get as _get  # noqa: E402
from openmm_flashmd.validation.records import clean  # noqa: E402
from openmm_flashmd.validation.reference import load_or_run_reference  # noqa: E402
from openmm_flashmd.validation.report import card_rows, fmt as _fmt  # noqa: E402
from openmm_flashmd.validation.report import _fallback, _pm, pooled_note  # noqa: E402
from openmm_flashmd.validation.sampling import State, advance  # noqa: E402
from openmm_flashmd.validation.target import (COLLISION_RATE, Target, ValidationError,  # noqa: E402
                                              system_from_model_name)

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "validation"
DEFAULT_WORK = Path("/tmp/flashmd-validation")


def _goal(key: str, system: Optional[str], stride_fs: Optional[int], must: float, aim: Optional[float],
          text: str, spec: str = ".3g") -> Dict[str, Any]:
    return dict(key=key, system=system, stride_fs=stride_fs, must=must, aim=aim, text=text, spec=spec)


def _water_goals(system: str, label: str, stride_fs: int = 16) -> List[Dict[str, Any]]:
    """Issue 15's goals of a water box at ``stride_fs``: temperatures (NVT with filter; a rigid
    box's elements against reference MD, since constraints move them off 300 K), O-O RDF,
    density and stability."""
    elements = "reference MD" if system == "water-rigid" else "300 K"
    head = f"{label} {stride_fs} fs"
    return [_goal("water_T_elements", system, stride_fs, 10.0, 1.0,
                  f"{head}, NVT with filter: largest deviation of an element's T from {elements} (K)"),
            _goal("water_T_overall", system, stride_fs, 2.0, 0.5, f"{head}, NVT with filter: deviation of the overall T from 300 K (K)"),
            _goal("water_rdf", system, stride_fs, 2.0, 1.0, f"{head}: O–O RDF integrated difference from reference MD (%)"),
            _goal("water_density", system, stride_fs, 2.0, 0.5, f"{head}: NpT density's deviation from reference MD (%)"),
            _goal("stability", system, stride_fs, 1000.0, 10000.0, f"{head}: NVT with filter without failure (ps, at least)",
                  spec=".0f")]


#: Goals of the validation (issue 15's table, judged on the validation JSON at friction 1/ps; see
#: ``evaluate_goals``). ``must``: must reach, ``aim``: aim (None: none), in the text's units.
GOALS = (
    _water_goals("water", "water")
    + _water_goals("water-rigid", "rigid water")
    + _water_goals("water-rigid", "rigid water", stride_fs=8)
    + [_goal("alanine_js", "alanine-dipeptide-implicit-hbonds", 8, 0.05, 0.01,
             "alanine dipeptide (HBonds) 8 fs: Ramachandran JS divergence from reference MD (nats)"),
       _goal("nve", None, None, 5.0, None, "NVE without filter: T(end) − T(start) after 50 ps (K)")]
)


def goal_status(values: List[Tuple[float, Optional[float]]], threshold: float, at_least: bool = False) -> str:
    """``met``, ``not met`` or ``not resolved`` for measured ``(value, standard error)`` pairs that
    must all be at most ``threshold`` (``at_least``: at least; errors None where unknown). Any
    value beyond the threshold is not met, however noisy; a goal is met only when every value is
    within it by ``GOAL_CONFIDENCE`` errors, otherwise not resolved (the runs are too short to tell)."""
    if at_least:
        return "met" if all(v >= threshold for v, _ in values) else "not met"
    if any(v > threshold for v, _ in values):
        return "not met"
    if all(e is None or not np.isfinite(e) or v + GOAL_CONFIDENCE * e <= threshold for v, e in values):
        return "met"
    return "not resolved"


def _goal_values(goal: Dict[str, Any], data: Dict[str, Any], notes: List[str]
                 ) -> Optional[List[Tuple[float, Optional[float]]]]:
    """The measured (value, standard error) pairs a goal judges (None: not measured); notes
    say where they come from."""
    key = goal["key"]
    if key in ("water_T_elements", "water_T_overall"):
        # the stability run's temperatures when recorded (950 ps), else the measured 50 ps run's
        long_run = _get(data, "stability", "temperature_K")
        temps = long_run or _get(data, "nvt", "filter", "temperature_K") or {}
        window = (f"{_get(data, 'stability', 'length_ps') - _get(data, 'stability', 'temperature_from_ps'):.0f} ps "
                  "of the stability run" if long_run else f"the {_get(data, 'lengths', 'nvt_ps') or 0:g} ps NVT run")
        if key == "water_T_overall":
            entry = temps.get("all") or {}
            if entry.get("dev_target") is None:
                return None
            notes.append(f"{entry['dev_target']:+.2f} ± {entry.get('sem', math.nan):.2f} K over {window}")
            return [(abs(entry["dev_target"]), entry.get("sem"))]
        dev, sem = ("dev_reference", "dev_reference_sem") if goal["system"] == "water-rigid" else ("dev_target", "sem")
        devs = {k: (v[dev], v.get(sem)) for k, v in temps.items() if k != "all" and v.get(dev) is not None}
        if not devs:
            return None
        notes.append(", ".join(f"{k} {d:+.2f} ± {e:.2f} K" for k, (d, e) in devs.items()) + f" over {window}")
        return [(abs(d), e) for d, e in devs.values()]
    if key == "water_rdf":
        value = _get(data, "rdf", "O-O", "difference_percent")
        noise = _get(data, "nvt", "reference", "rdf_noise")
        frames = _get(data, "rdf", "O-O", "frames")
        if value is not None and frames:
            notes.append(f"FlashMD's RDF from {frames} frames" + pooled_note(_get(data, "nvt", "filter")))
            runs = _get(data, "nvt", "filter", "runs") or []
            first = (runs[0].get("rdf_difference_percent") or {}).get("O-O") if len(runs) > 1 else None
            if first is not None:
                notes.append(f"its first {runs[0]['length_ps']:g} ps alone: {first:.2f} %")
        if value is not None and noise and noise["difference_percent"].get("O-O") is not None:
            notes.append(f"reference MD's own {noise['first_ps']:g} ps against its other {noise['rest_ps']:g} ps: "
                         f"{noise['difference_percent']['O-O']:.2f} %")
        return None if value is None else [(value, None)]
    if key == "water_density":
        value = _get(data, "npt", "flashmd", "relative_difference_percent")
        if value is None:
            return None
        error = _get(data, "npt", "flashmd", "relative_difference_sem_percent")
        runs = "".join(f"; {who}{pooled_note(_get(data, 'npt', key))}" for who, key in
                       (("FlashMD", "flashmd"), ("reference MD", "reference")) if pooled_note(_get(data, "npt", key)))
        notes.append((f"{value:+.2f} ± {error:.2f} %" if error is not None else f"{value:+.2f} %") + runs)
        return [(abs(value), error)]
    if key == "stability":
        stab = data.get("stability") or {}
        if not stab.get("ran"):
            return None
        if not stab.get("stable"):
            notes.append(f"failed at {stab.get('failed_at_ps', math.nan):.4g} ps")
            return [(stab.get("failed_at_ps") or 0.0, None)]
        return [(stab["length_ps"], None)]
    if key == "alanine_js":
        value = _get(data, "ramachandran", "js_divergence")
        floor = _get(data, "ramachandran", "js_reference_halves")
        if floor is not None:
            notes.append(f"reference half vs half: {floor:.4f}")
        return None if value is None else [(value, None)]
    value = _get(data, "nve", "T_drift_K")
    if _get(data, "nve", "completed_ps") is not None:
        notes.append(f"after {_get(data, 'nve', 'completed_ps'):g} ps")
    return None if value is None else [(abs(value), None)]


def bundled_strides(system: str) -> List[int]:
    """Strides (fs) of the bundled models named ``<system>-<N>fs``."""
    from openmm_flashmd.model.bundled import bundled_models, split_model_name

    strides = []
    for name in bundled_models():
        parts = split_model_name(name)
        if parts and parts[0] == system:
            strides.append(parts[1])
    return sorted(strides)


def parse_overrides(pairs: List[str]) -> Dict[str, float]:
    out = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--set expects KEY=VALUE, got {pair!r}")
        out[key.strip()] = float(value)
    return out


def model_protocol(stem: str, system_name: Optional[str], lengths_mode: str, overrides: Dict[str, float],
                   out_json: Path, overwrite: bool, threads: Optional[int], fallback: bool = True,
                   progress: bool = True) -> Tuple[Target, Dict[str, float]]:
    """The built-in system a model is validated on (``system_name``, else from its
    ``<system>-<N>fs`` name ``stem``) and its run lengths (ps) in ``lengths_mode`` with
    ``overrides``. Refuses an existing ``out_json`` unless ``overwrite``, before anything runs."""
    system_name = system_name or system_from_model_name(stem)
    if system_name is None:
        raise SystemExit(f"cannot tell the system from the model name {stem!r}; pass --system")
    if out_json.exists() and not overwrite:
        raise SystemExit(f"{out_json} exists; pass --overwrite to replace it")
    try:
        target = Target.builtin(system_name, threads, fallback, progress)
        return target, protocol_lengths(target, lengths_mode, overrides)
    except (ValidationError, ValueError) as exc:
        raise SystemExit(str(exc).splitlines()[0]) from None


def validate_model(model_arg: str, system_name: Optional[str], out: Path, lengths_mode: str, overwrite: bool,
                   work_dir: Path, overrides: Dict[str, float], stability: Optional[bool], name: Optional[str],
                   threads: Optional[int], collision_rate: float = COLLISION_RATE, fallback: bool = True,
                   progress: bool = True, resume: bool = False) -> Path:
    """Validate one model on its built-in system (:func:`openmm_flashmd.validation.validate`)
    and write ``out/<name>.json``. ``collision_rate`` (1/ps) is FlashMD's Langevin friction;
    reference MD keeps ``COLLISION_RATE``. ``fallback``: FlashMD runs with the stride monitor.
    ``resume``: reuse the phases an interrupted validation finished in ``work_dir`` (refused
    when they were run with another model or other settings)."""
    import torch

    from openmm_flashmd import load_model, read_metadata

    stem = name or Path(model_arg).stem
    target, _ = model_protocol(stem, system_name, lengths_mode, overrides, out / f"{stem}.json", overwrite, threads,
                               fallback, progress)
    if threads:
        torch.set_num_threads(threads)
    model = load_model(model_arg)
    bundled = bundled_strides(target.name)
    stride_fs = int(round(float(read_metadata(model)["stride"]) * 1000))
    if stability is None:
        stability = not bundled or stride_fs >= max(bundled)
        reason = "largest bundled stride of the system" if bundled else "no bundled models of the system"
        if not stability:
            reason = f"not the largest bundled stride ({max(bundled)} fs); pass --stability"
    else:
        reason = "--stability" if stability else "--no-stability"
    try:
        path = validate(model, target, out, stem=stem, lengths_mode=lengths_mode, overrides=overrides, cache_dir=out,
                        work_dir=Path(work_dir) / stem, stability=stability, stability_reason=reason,
                        collision_rate=collision_rate, resume=resume, overwrite_reference=overwrite,
                        model_source=model_arg, stack=stack_info())
    except ValidationError as exc:
        raise SystemExit(str(exc)) from None
    print(f"wrote {path}")
    return path


# --------------------------------------------------------------------------- friction scan
#: Default Langevin frictions (1/ps) of the friction scan.
FRICTION_RATES = (1.0, 10.0, 30.0, 100.0)


def _water_diffusion(target: Target, series: Dict[str, Any], length_ps: float) -> Optional[float]:
    if "positions" not in series:
        return None
    return compare.water_oxygen_diffusion(target.topology, series["time"], series["positions"], series["boxes"],
                                          length_ps)


def reference_nvt_at(target: Target, start: State, lengths: Dict[str, float], collision_rate: float) -> Dict[str, Any]:
    """Reference MD at friction ``collision_rate`` (1/ps) from ``start``: water-O self-diffusion (nm^2/ps)."""
    import copy

    dt = target.timestep
    integrator = target.langevin(collision_rate)
    context = target.context(copy.deepcopy(target.system), integrator)
    start.apply(context, target.periodic)
    advance(context, integrator, dt, lengths["settle_ps"], 1000, f"reference NVT {collision_rate:g}/ps settle",
            progress=target.progress)
    rec = target.recorder(positions=True)
    interval = max(1, int(round(lengths["sample_ps"] / dt)))
    run = advance(context, integrator, dt, lengths["nvt_ps"], interval, f"reference NVT {collision_rate:g}/ps", rec,
                  progress=target.progress)
    diffusion = compare.water_oxygen_diffusion(target.topology, rec.time, rec.positions, rec.boxes, run["done_ps"])
    return {"length_ps": run["done_ps"], "diffusion_O_nm2_per_ps": diffusion}


def friction_scan(model_arg: str, system_name: Optional[str], rates: List[float], out: Path, lengths_mode: str,
                  overwrite: bool, overrides: Dict[str, float], threads: Optional[int], progress: bool = True) -> Path:
    """FlashMD NVT ("O F E O") at each Langevin friction in ``rates`` (1/ps): per-element
    temperatures against reference MD (the cached reference at 1/ps: equilibrium values do not
    depend on friction), filter clamps, O-O RDF difference and, for water, the O
    self-diffusion coefficient next to reference MD run at the same friction. Writes
    ``out/friction-<model>.json`` (rendered into the README) and a PNG next to the other
    validation plots."""
    import torch

    from openmm_flashmd import load_model, read_metadata

    stem = Path(model_arg).stem
    out_json = out / f"friction-{stem}.json"
    target, lengths = model_protocol(stem, system_name, lengths_mode, overrides, out_json, overwrite, threads,
                                     progress=progress)
    if not rates or min(rates) <= 0:
        raise SystemExit(f"frictions must be positive (1/ps), got {rates}")
    if threads:
        torch.set_num_threads(threads)
    began = time.perf_counter()
    model = load_model(model_arg)
    stride = float(read_metadata(model)["stride"])
    validation_dir = out / "validation"
    validation_dir.mkdir(parents=True, exist_ok=True)
    # the cached reference is replaced only by `validate.py reference --overwrite`, never here
    try:
        reference, ref_arrays, _ = load_or_run_reference(target, lengths, validation_dir, False, stack_info())
    except ValidationError as exc:
        raise SystemExit(str(exc)) from None
    start = State(ref_arrays["start_positions"], ref_arrays["start_velocities"], ref_arrays["start_box"])

    rows = []
    for rate in sorted(rates):
        nvt, series = runs.flashmd_nvt(target, model, "O F E O", start, lengths, stride, reference, True,
                                       collision_rate=rate)
        flashmd = {k: nvt.get(k) for k in ("completed_ps", "failed_at_ps", "error", "temperature_K", "filter")}
        if nvt.get("failed_at_ps") is None and "positions" in series:
            traj = compare.trajectory(target.topology, series["positions"], series["boxes"])
            if "rdf_r" in ref_arrays:
                flashmd["rdf"] = compare.rdf_comparison(traj, float(reference["rdf_r_max_nm"]), ref_arrays)[0]
            flashmd["diffusion_O_nm2_per_ps"] = _water_diffusion(target, series, nvt["completed_ps"])
        rows.append({"collision_rate_per_ps": rate, "flashmd": flashmd,
                     "reference": reference_nvt_at(target, start, lengths, rate)})

    plot = validation_dir / f"friction-{stem}.png"
    plots.plot_friction(plot, rows)
    result = {"benchmark": "friction_scan", "model": stem, "system": target.name, "stride_ps": stride,
              "lengths_mode": lengths_mode, "lengths": lengths, "temperature_K": target.temperature,
              "reference_temperature_K": (reference.get("nvt") or {}).get("temperature_K"),
              "diffusion_fit_window_ps": list(compare.diffusion_fit_window(lengths["nvt_ps"])),
              "rates": rows, "plot": str(plot.relative_to(out)), "wall_s": time.perf_counter() - began,
              "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "stack": stack_info()}
    write_json(out_json, clean(result), overwrite=overwrite)
    return out_json


# --------------------------------------------------------------------------- summarize
def _model_for(models: Dict[str, Dict], system: str, stride_fs: int) -> Optional[Tuple[str, Dict]]:
    preferred = f"{system}-{stride_fs}fs"
    if preferred in models:
        return preferred, models[preferred]
    for name, data in sorted(models.items()):
        if data.get("system") == system and int(round(data.get("stride_ps", 0) * 1000)) == stride_fs:
            return name, data
    return None


def evaluate_goals(models: Dict[str, Dict]) -> List[Dict[str, Any]]:
    """One row per goal (and per model for the NVE goal): the judged value (the worst of its
    values), its standard error, the must-reach and aim thresholds and their statuses
    (:func:`goal_status`; ``not measured`` without a value); ``met`` is True / False / None
    (not resolved or not measured) for the must-reach threshold. Goals are judged on runs at
    the validation's friction only; variants run with another ``--collision-rate`` are shown in
    the table, not judged."""
    models = {k: v for k, v in models.items() if v.get("collision_rate_per_ps", COLLISION_RATE) == COLLISION_RATE}
    rows = []
    for goal in GOALS:
        targets = ([(n, d) for n, d in sorted(models.items())] if goal["system"] is None
                   else [m for m in [_model_for(models, goal["system"], goal["stride_fs"])] if m])
        base = {"goal": goal["key"], "text": goal["text"], "must": goal["must"], "aim": goal["aim"], "spec": goal["spec"]}
        if not targets:
            rows.append({**base, "model": None, "value": None, "error": None, "status": "not measured",
                         "aim_status": None, "met": None, "note": ""})
            continue
        for name, data in targets:
            notes: List[str] = []
            values = _goal_values(goal, data, notes)
            run_of_goal = {"nve": ("nve",), "water_density": ("npt", "flashmd"),
                           "stability": ("stability",)}.get(goal["key"], ("nvt", "filter"))
            failed = _get(data, *run_of_goal, "failed_at_ps") is not None
            if failed and goal["key"] != "stability":
                notes.append(f"run failed at {_get(data, *run_of_goal, 'failed_at_ps'):.4g} ps")
            if data.get("lengths_mode") != "full":
                notes.append(f"{data.get('lengths_mode')} lengths")
            if _get(data, "reference", "stale"):
                notes.append("compared with an older reference MD run")
            if data.get("overrides"):
                notes.append("lengths overridden: " + ", ".join(f"{k}={v:g}" for k, v in sorted(data["overrides"].items())))
            rows.append(_goal_row(base, name, values, failed,
                                  _get(data, *run_of_goal, "fallback", "fallback_fraction"), notes))
    return rows


def _goal_row(base: Dict[str, Any], model: str, values: Optional[List[Tuple[float, Optional[float]]]], failed: bool,
              fallback_share: Optional[float], notes: List[str]) -> Dict[str, Any]:
    """A goal row: ``base`` (goal, text, must, aim, spec) judged on ``values`` (None: not measured)
    of ``model``'s run (``failed``: not met); a goal met with more than the trust check's share of
    strides as fallback MD is not met (the goals judge the stride model, not the MD strides that
    kept its run), and any such share is noted."""
    at_least = base["goal"] == "stability"

    def judge(threshold: Optional[float]) -> Optional[str]:
        if values is None or threshold is None:
            return None
        return "not met" if failed else goal_status(values, threshold, at_least)

    status, aim_status = judge(base["must"]) or "not measured", judge(base["aim"])
    fallback_note = met_only_by_fallback(fallback_share)
    if fallback_note:
        notes.append(fallback_note if status == "met" else f"{fallback_share:.0%} of strides as MD")
        status = "not met" if status == "met" else status
        aim_status = "not met" if aim_status == "met" else aim_status
    value, error = max(values, key=lambda ve: ve[0]) if values else (None, None)
    return {**base, "model": model, "value": value, "error": error, "status": status, "aim_status": aim_status,
            "met": {"met": True, "not met": False}.get(status), "note": "; ".join(notes)}


def blog_goals(blog: Dict[str, Any]) -> List[Dict[str, Any]]:
    """Issue 15's goals of the blog's NVE protocol (``benchmarks/blog_nve.py``'s JSON ``blog``), one
    row per model and goal, in :func:`evaluate_goals`' format: |T(end) - T(start)| (K; must 10,
    aim 2) and |total-energy drift| (kJ/mol/ps; must 5) of FlashMD without filter, each the mean
    over the model's start states with its standard error (none for a single start); a goal met
    with more than the trust check's share of strides as fallback MD is not met."""
    goals = (("blog_T", "T_drift_K", 10.0, 2.0, "blog protocol, 258 rigid waters, NVE without filter, 50 ps: "
                                                  "T(end) − T(start) (K)"),
             ("blog_drift", "energy_drift_kjmol_per_ps", 5.0, None, "blog protocol: total-energy drift (kJ/mol/ps)"))
    rows = []
    for name, data in sorted((blog.get("models") or {}).items()):
        if data.get("lengths_mode") != "full":
            continue
        summary = data.get("summary") or {}
        flashmd = next((s for label, s in summary.items() if label.startswith("FlashMD")), {})
        reference = next((s for label, s in summary.items() if label.startswith("reference")), {})
        for key, field, must, aim, text in goals:
            stats = flashmd.get(field) or {}
            value, sem = stats.get("mean"), stats.get("sem")
            notes = []
            if value is not None:
                spread = f" ± {sem:.2g} over {stats['n']} starts ({', '.join(f'{v:+.3g}' for v in stats['values'])})" \
                    if stats.get("n", 1) > 1 else ""
                ref = (reference.get(field) or {}).get("mean")
                notes.append(f"{value:+.3g}{spread}; reference MD {math.nan if ref is None else ref:+.3g}")
            failed = bool(flashmd.get("failed"))
            if failed:
                notes.append(f"{flashmd['failed']} run(s) failed")
            rows.append(_goal_row({"goal": key, "text": text, "must": must, "aim": aim, "spec": ".3g"}, name,
                                  None if value is None else [(abs(value), sem)], failed,
                                  flashmd.get("fallback_fraction"), notes))
    return rows


def _runs_of_length(power: Dict[str, Any], duration_ps: float) -> List[Dict[str, Any]]:
    """The runs of ``duration_ps`` (ps) in a ``benchmarks/trust_check_power.py`` JSON."""
    return next((row.get("runs") or [] for row in power.get("lengths", [])
                 if abs(row.get("time_ps", -1.0) - duration_ps) < 1e-9), [])


def _temperature_verdicts(runs: List[Dict[str, Any]]) -> str:
    """How many of ``runs`` the temperature check passed, failed and could not judge, in words."""
    verdicts = [r.get("verdict") for r in runs]
    return ", ".join(f"{verdicts.count(v)} {v.replace('_', ' ')}" for v in ("passed", "failed", "not_judged")
                     if v in verdicts)


def default_report_goal(power: Dict[str, Any], duration_ps: float,
                        reference: Optional[Dict[str, Any]] = None) -> List[Dict[str, Any]]:
    """Issue 15's goal "the default ``openmm-flashmd simulate`` report: all trust checks pass", from
    ``benchmarks/trust_check_power.py --model``'s JSON ``power``: the share of its runs of the
    default length ``duration_ps`` whose report passed every check (must: all of them). With
    ``reference`` (the same script's JSON for reference MD) the note adds how its runs of that
    length fared in the same temperature check: what exact dynamics scores."""
    runs = _runs_of_length(power, duration_ps)
    if not runs:
        return []
    passed = [r.get("verdict") == "passed" and not r.get("other_failed_checks") for r in runs]
    note = (f"{sum(passed)} of {len(runs)} runs of {duration_ps:g} ps passed every check (temperature: "
            + _temperature_verdicts(runs) + ")")
    reference_runs = _runs_of_length(reference or {}, duration_ps)
    if reference_runs:
        note += (f"; reference MD's {len(reference_runs)} runs of that length in the same temperature check: "
                 + _temperature_verdicts(reference_runs))
    share = sum(passed) / len(runs)
    status = goal_status([(share, None)], 1.0, at_least=True)
    return [{"goal": "default_report", "text": f"the default `openmm-flashmd simulate` report ({power.get('model')}, "
                                               f"{duration_ps:g} ps): share of runs passing every trust check",
             "must": 1.0, "aim": None, "spec": ".2f", "model": power.get("model"), "value": share, "error": None,
             "status": status, "aim_status": None, "met": status == "met", "note": note}]


def add_exact_dynamics_notes(goals: List[Dict[str, Any]], results: Path) -> List[Dict[str, Any]]:
    """The alanine Ramachandran goal's note gains what exact dynamics reads on the same comparison
    (1 ns windows of independent reference MD runs against the cached reference,
    ``ramachandran_windows.json`` in ``results``, where present): the value a perfect model
    would show, which the cached run's halves (two 1 ns runs against each other) are not."""
    path = results / "ramachandran_windows.json"
    if not path.exists():
        return goals
    windows = json.loads(path.read_text())
    exact = windows.get("exact_dynamics") or {}
    if not exact.get("windows"):
        return goals
    note = (f"exact dynamics, {exact['windows']} windows of {windows['window_ns']:g} ns on the same comparison: "
            f"mean {exact['mean']:.3f} ({exact['min']:.3f}–{exact['max']:.3f}; ramachandran_windows.json)")
    for goal in goals:
        if goal["goal"] == "alanine_js":
            goal["note"] = "; ".join(n for n in (goal.get("note"), note) if n)
    return goals


def other_goals(results: Path) -> List[Dict[str, Any]]:
    """The goal rows of issue 15 that other benchmarks measure, from their JSON in ``results``
    (``blog_nve.json``; ``trust_check_power-<default model>.json`` at ``simulate``'s default
    length), where present."""
    from openmm_flashmd.simulate import DEFAULT_MODELS, DEFAULT_SYSTEM, default_duration

    rows: List[Dict[str, Any]] = []
    if (results / "blog_nve.json").exists():
        rows += blog_goals(json.loads((results / "blog_nve.json").read_text()))
    power = results / f"trust_check_power-{DEFAULT_MODELS[DEFAULT_SYSTEM]}.json"
    reference = results / "trust_check_power.json"
    if power.exists():
        rows += default_report_goal(json.loads(power.read_text()), default_duration(DEFAULT_SYSTEM),
                                    json.loads(reference.read_text()) if reference.exists() else None)
    return rows


def summary_markdown(merged: Dict[str, Any]) -> str:
    lines = ["# FlashMD validation against reference MD", "",
             "Generated by `python benchmarks/validate.py summarize`; every number comes from the JSON files "
             "in this folder. Temperatures are kinetic (mean ± block standard error), ΔT against the thermostat "
             "target; JS divergences in nats.", "", "## Goals", "",
             "| goal | model | value | must reach | aim | details |", "|---|---|---:|---|---|---|"]
    for row in merged["goals"]:
        value, must, aim = goal_cells(row)
        lines.append(f"| {row['text']} | {row['model'] or '—'} | {value} | {must} | {aim} | {row['note']} |")
    for name, data in sorted(merged["models"].items()):
        friction = data.get("collision_rate_per_ps", COLLISION_RATE)
        lines += ["", f"## {name} ({data['system']}, {data['stride_ps'] * 1000:g} fs, {data['lengths_mode']} lengths"
                  + (f", FlashMD friction {friction:g}/ps" if friction != COLLISION_RATE else "") + ")", ""]
        elements = sorted(k for k in (_get(data, "nvt", "reference", "temperature_K") or {}) if k != "all")
        lines += ["| run | T all (K) | " + " | ".join(f"T {e} (K)" for e in elements)
                  + " | filter clamped | mean scale | status |"]
        lines.append("|---|" + "---:|" * (1 + len(elements)) + "---:|---:|---|")
        for label, key in (("FlashMD + filter (O F E O)", "filter"), ("FlashMD, no filter (O F O)", "no_filter"),
                           ("reference MD", "reference")):
            run = _get(data, "nvt", key) or {}
            temps = run.get("temperature_K") or {}
            status = ("failed at %.3g ps" % run["failed_at_ps"]) if run.get("failed_at_ps") is not None else "ok"
            status += _fallback(run)
            filt = run.get("filter") or {}
            lines.append(f"| {label} | {_pm(temps.get('all'))} | " + " | ".join(_pm(temps.get(e)) for e in elements)
                         + f" | {_fmt(filt.get('clamped_fraction'), '.3f')} | {_fmt(filt.get('mean_scale'), '.4f')} | "
                         f"{status} |")
        if data.get("rdf"):
            lines += ["", "RDF integrated absolute difference vs reference: " + ", ".join(
                f"{pair} {_fmt(v.get('difference_percent'), '.2f')} %" for pair, v in data["rdf"].items()) + "."]
        if data.get("npt"):
            f, r = data["npt"]["flashmd"], data["npt"]["reference"]
            status = f", failed at {f['failed_at_ps']:.3g} ps" if f.get("failed_at_ps") is not None else ""
            lines += ["", f"NpT density (g/cm³): FlashMD {_pm(f.get('density_g_cm3'), spec='.4f')}{pooled_note(f)}, "
                          f"reference {_pm(r.get('density_g_cm3'), spec='.4f')}{pooled_note(r)}; difference "
                          f"{_fmt(f.get('relative_difference_percent'), '+.2f', ' %')}{status}."]
        rama = data.get("ramachandran")
        if rama:
            lines += ["", f"Ramachandran JS divergence (36×36 bins, nats): {_fmt(rama.get('js_divergence'), '.4f')} "
                          f"(reference first half vs second half: {_fmt(rama.get('js_reference_halves'), '.4f')}).", "",
                      "| basin | FlashMD + filter | reference MD |", "|---|---:|---:|"]
            basins = rama.get("basins") or {}
            for basin in ("alpha_R", "beta_PPII", "alpha_L"):
                cells = [_pm(_get(basins, who, basin), key="value", spec=".3f") for who in ("flashmd", "reference")]
                lines.append(f"| {basin} | {cells[0]} | {cells[1]} |")
        nve = data.get("nve") or {}
        status = f", failed at {nve['failed_at_ps']:.3g} ps" if nve.get("failed_at_ps") is not None else ""
        lines += ["", f"NVE without filter (\"F\", {_fmt(nve.get('completed_ps'), 'g')} ps): T start "
                      f"{_fmt(nve.get('T_start_K'), '.1f')} K, end {_fmt(nve.get('T_end_K'), '.1f')} K, drift "
                      f"{_fmt(nve.get('T_drift_K'), '+.1f')} K; total-energy drift "
                      f"{_fmt(nve.get('energy_drift_kjmol_per_ps_per_atom'), '.3g')} kJ/mol/ps/atom{status}"
                      f"{_fallback(nve)}."]
        stab = data.get("stability") or {}
        if stab.get("ran"):
            verdict = "stable" if stab.get("stable") else f"failed at {_fmt(stab.get('failed_at_ps'), '.4g')} ps"
            lines += ["", f"Stability (NVT with filter, {stab.get('length_ps'):g} ps): {verdict}; T range "
                          f"{_fmt(stab.get('T_min_K'), '.0f')}–{_fmt(stab.get('T_max_K'), '.0f')} K, max speed "
                          f"{_fmt(stab.get('max_speed_nm_per_ps'), '.3g')} nm/ps{_fallback(stab)}."]
        cost = data.get("cost") or {}
        lines += ["", f"Cost: reference MD {_fmt(cost.get('reference_s_per_ps'), '.3g')} s/ps, FlashMD "
                      f"{_fmt(cost.get('flashmd_s_per_ps'), '.3g')} s/ps, speedup {_fmt(cost.get('speedup'), '.1f')}×.",
                  ""]
        lines += [f"![{p}]({p})" for p in data.get("plots", [])]
    return "\n".join(lines) + "\n"


def summarize(out: Path) -> Path:
    """Merge ``out/*.json`` model results into ``out/../validation.json`` and write ``out/summary.md``."""
    models, references = {}, {}
    for path in sorted(Path(out).glob("*.json")):
        data = json.loads(path.read_text())
        if data.get("benchmark") == "validation-model":
            models[data["model"]] = data
        elif data.get("benchmark") == "validation-reference":
            references[data["system"]] = {k: data.get(k) for k in ("settings", "nvt", "npt", "basins",
                                                                    "js_between_halves", "cost", "created")}
    if not models:
        raise SystemExit(f"no model results (*.json with benchmark 'validation-model') in {out}")
    hashes = {}
    for path in sorted(Path(out).glob("reference-*.json")):
        data = json.loads(path.read_text())
        hashes[data.get("system")] = data.get("settings_hash")
    for data in models.values():  # a reference re-run with other settings after this model was validated
        data["reference"]["stale"] = hashes.get(data["system"]) != data["reference"].get("settings_hash")
        data["card_rows"] = card_rows(data)
    stacks = [m["stack"] for m in models.values() if m.get("stack")]
    merged = {"benchmark": "validation",
              "description": "FlashMD stride models against reference MD with the same classical potential "
                             "(benchmarks/validate.py)",
              "goals": (add_exact_dynamics_notes(evaluate_goals(models), Path(out).resolve().parent)
                        + other_goals(Path(out).resolve().parent)),
              "models": models, "references": references,
              "stack": stacks[0] if stacks else stack_info(),
              "stacks_differ": any(s != stacks[0] for s in stacks)}
    merged = clean(merged)
    target = Path(out).resolve().parent / "validation.json"
    write_json(target, merged, overwrite=True)
    summary = Path(out) / "summary.md"
    summary.write_text(summary_markdown(merged))
    print(f"wrote {summary}")
    return target


def add_pooled_run(args: argparse.Namespace) -> None:
    """``npt`` / ``nvt``: one more run of a model or of reference MD (another seed), pooled into the
    validation's numbers (:mod:`openmm_flashmd.validation.pooling`)."""
    from openmm_flashmd.validation import pooling

    began = time.perf_counter()
    try:
        if args.name == "reference":
            if not args.system:
                raise SystemExit(f"{args.command} reference needs --system (e.g. --system water-rigid)")
            add = pooling.add_reference_density_run if args.command == "npt" else pooling.add_reference_nvt_run
            written = add(args.out, args.system, args.ps, args.seed, args.threads, not args.no_progress)
        else:
            add = pooling.add_model_density_run if args.command == "npt" else pooling.add_model_nvt_run
            written = add(args.out, args.name, args.ps, args.seed, args.model, args.threads, not args.no_progress)
    except ValidationError as exc:
        raise SystemExit(str(exc)) from None
    print(f"{args.ps:g} ps {args.command.upper()} with seed {args.seed} in {time.perf_counter() - began:.0f} s; wrote "
          + ", ".join(str(p) for p in written))


# --------------------------------------------------------------------------- CLI
def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="validate one model")
    run.add_argument("model", help="bundled model name (e.g. water-16fs) or a model file")
    run.add_argument("--system", help="built-in system (default: the model name without -<N>fs)")
    run.add_argument("--name", help="result name (default: the model's file stem)")
    run.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results folder (default %(default)s)")
    run.add_argument("--lengths", choices=sorted(LENGTHS), default="full",
                     help="run lengths: full (the real validation) or quick (seconds, for tests)")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override a length (ps) or 'blocks', e.g. --set nvt_ps=0.2")
    run.add_argument("--overwrite", action="store_true",
                     help="replace an existing result (and a cached reference made with other settings)")
    run.add_argument("--work-dir", type=Path, default=DEFAULT_WORK, help="trajectories (default %(default)s)")
    group = run.add_mutually_exclusive_group()
    group.add_argument("--stability", dest="stability", action="store_true", default=None,
                       help="always run the stability test")
    group.add_argument("--no-stability", dest="stability", action="store_false", help="never run it")
    run.add_argument("--threads", type=int, default=None, help="OpenMM CPU and torch threads (default: theirs)")
    run.add_argument("--collision-rate", type=float, default=COLLISION_RATE,
                     help="FlashMD's Langevin friction in 1/ps (default %(default)s; reference MD keeps 1/ps; "
                          "goals are judged at the default only)")
    run.add_argument("--no-fallback", dest="fallback", action="store_false",
                     help="FlashMD runs without the stride monitor (a failed stride ends a run)")
    run.add_argument("--no-progress", action="store_true", help="no progress bars")
    run.add_argument("--resume", action="store_true",
                     help="reuse the phases an interrupted run of the same model and settings finished in "
                          "--work-dir and continue its stability run from the last checkpoint; other NpT "
                          "lengths (--set npt_ps=...) run the NpT phase again and reuse the rest")
    ref = sub.add_parser("reference", help="run (or reuse) only the reference MD of a system")
    ref.add_argument("system", help="built-in system, e.g. water")
    ref.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results folder (default %(default)s)")
    ref.add_argument("--lengths", choices=sorted(LENGTHS), default="full")
    ref.add_argument("--overwrite", action="store_true", help="replace a cached reference made with other settings")
    ref.add_argument("--threads", type=int, default=None, help="OpenMM CPU threads (default: OpenMM's)")
    fric = sub.add_parser("friction", help="per-element temperatures and diffusion against Langevin friction")
    fric.add_argument("model", help="bundled model name (e.g. water-rigid-16fs) or a model file")
    fric.add_argument("--system", help="built-in system (default: the model name without -<N>fs)")
    fric.add_argument("--rates", type=float, nargs="+", default=list(FRICTION_RATES),
                      help="Langevin frictions in 1/ps (default %(default)s)")
    fric.add_argument("--out", type=Path, default=DEFAULT_OUT.parent,
                      help="results folder; the reference cache is its validation/ (default %(default)s)")
    fric.add_argument("--lengths", choices=sorted(LENGTHS), default="full")
    fric.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a length (ps)")
    fric.add_argument("--overwrite", action="store_true", help="replace an existing result")
    fric.add_argument("--threads", type=int, default=None, help="OpenMM CPU and torch threads (default: theirs)")
    fric.add_argument("--no-progress", action="store_true", help="no progress bars")
    for phase, help_text in (("npt", "add an independent NpT run (another seed) to a validation's density"),
                             ("nvt", "add an independent NVT run (another seed) to a validation's filtered NVT "
                                     "run (temperatures, RDFs) or to reference MD's")):
        more = sub.add_parser(phase, help=help_text)
        more.add_argument("name", help="a model result's name in --out (e.g. water-rigid-8fs), or 'reference'")
        more.add_argument("--model", help="the validated model (default: the bundled model of that name, "
                                          "else the result's model_source)")
        more.add_argument("--system", help="with 'reference': the built-in system (e.g. water-rigid)")
        more.add_argument("--ps", type=float, required=True, help="measured length of the new run (ps)")
        more.add_argument("--seed", type=int, required=True,
                          help="random seed of the new run (the validation's own run has seed 0)")
        more.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results folder (default %(default)s)")
        more.add_argument("--threads", type=int, default=None, help="OpenMM CPU and torch threads (default: theirs)")
        more.add_argument("--no-progress", action="store_true", help="no progress bars")
    again = sub.add_parser("compare", help="compare every model result of a system with its reference again")
    again.add_argument("--system", required=True, help="built-in system (e.g. water-rigid)")
    again.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results folder (default %(default)s)")
    summ = sub.add_parser("summarize", help="merge results into validation.json and summary.md")
    summ.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results folder (default %(default)s)")
    args = parser.parse_args(argv)
    if args.command == "run":
        validate_model(args.model, args.system, args.out, args.lengths, args.overwrite, args.work_dir,
                       parse_overrides(args.set), args.stability, args.name, args.threads, args.collision_rate,
                       args.fallback, progress=not args.no_progress, resume=args.resume)
    elif args.command == "reference":
        args.out.mkdir(parents=True, exist_ok=True)
        target = Target.builtin(args.system, args.threads)
        try:
            load_or_run_reference(target, protocol_lengths(target, args.lengths), args.out, args.overwrite, stack_info())
        except ValidationError as exc:
            raise SystemExit(str(exc)) from None
    elif args.command == "friction":
        args.out.mkdir(parents=True, exist_ok=True)
        friction_scan(args.model, args.system, args.rates, args.out, args.lengths, args.overwrite,
                      parse_overrides(args.set), args.threads, progress=not args.no_progress)
    elif args.command in ("npt", "nvt"):
        add_pooled_run(args)
    elif args.command == "compare":
        from openmm_flashmd.validation.pooling import compare_again

        try:
            written = compare_again(args.out, args.system)
        except ValidationError as exc:
            raise SystemExit(str(exc)) from None
        print("compared again: " + (", ".join(str(p) for p in written) or "no model results"))
    else:
        summarize(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
