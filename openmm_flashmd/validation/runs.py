"""The FlashMD runs of a validation (NVT with and without the energy filter, NpT, NVE without
filter) and the timing of reference MD, each from the reference's start state.

Each run returns a JSON-ready summary and its series (numpy arrays). Units: ps, K, kJ/mol,
g/cm^3, nm, nm/ps, s.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import numpy as np

from openmm_flashmd.validation import compare
from openmm_flashmd.validation.records import read_run_checkpoint, write_run_checkpoint
from openmm_flashmd.validation.sampling import Recorder, State, advance
from openmm_flashmd.validation.target import COLLISION_RATE, REFERENCE_BAROSTAT_FREQUENCY, SEED, Target, ValidationError


def fallback_record(integrator) -> Optional[Dict[str, Any]]:
    """The stride monitor's statistics of a run (None without the monitor)."""
    if not integrator.fallback:
        return None
    return {**integrator.fallback_statistics, "substeps": integrator.fallback_substeps}


#: Simulated ps between the checkpoints of a stability continuation (about two minutes of the
#: 64-water box at 16 fs on one CPU thread): an interrupted validation loses at most this much of it.
STABILITY_CHECKPOINT_PS = 50.0


def flashmd_nvt(target: Target, model, splitting: str, start: State, lengths: Dict[str, float], stride: float,
                reference: Dict[str, Any], positions: bool, continue_to_ps: float = 0.0,
                collision_rate: float = COLLISION_RATE, checkpoint: Optional[Path] = None,
                checkpoint_ps: float = STABILITY_CHECKPOINT_PS, seed: int = SEED) -> Tuple[Dict, Dict[str, np.ndarray]]:
    """NVT FlashMD run (friction ``collision_rate``, 1/ps): settle, measure ``nvt_ps``,
    optionally continue to ``continue_to_ps`` (stability). Series: ``time``, ``T_<key>``, in a
    System of several molecules ``Tmol_translation`` and ``Tmol_rotation`` (the molecules'
    translational and rotational temperatures, summarised as ``molecule_temperature_K``) and,
    with ``positions``, the sampled ``positions`` and ``boxes`` of the measured part.

    ``checkpoint``: a file where the continuation saves itself every ``checkpoint_ps`` (ps,
    rounded to whole sampling intervals) and from which, when it exists, the run resumes: it
    then goes on from the saved time as the uninterrupted run would have (OpenMM checkpoints hold
    the integrator's variables and random-number state): bit for bit on the Reference platform;
    on the CPU platform two uninterrupted runs already differ in the last bits. The caller
    deletes it once the run's result is stored. ``seed``: the integrator's random numbers."""
    system = copy.deepcopy(target.system)
    integrator = target.flashmd(system, model, splitting, collision_rate, seed=seed)
    context = target.context(system, integrator)
    interval = max(1, int(round(lengths["sample_ps"] / stride)))
    label = f"FlashMD NVT {splitting}"
    if checkpoint is not None and continue_to_ps > 0 and Path(checkpoint).exists():
        import openmm

        try:
            context_checkpoint, saved, arrays = read_run_checkpoint(checkpoint)
            context.loadCheckpoint(context_checkpoint)
        except (ValueError, openmm.OpenMMException) as err:
            raise ValidationError(str(err).strip().splitlines()[0]) from None
        out, continuation = saved["measured"], saved["continuation"]
        series = {k[len("measured_"):]: v for k, v in arrays.items() if k.startswith("measured_")}
        more = target.recorder(molecules=True)
        more.restore({k[len("continued_"):]: v for k, v in arrays.items() if k.startswith("continued_")})
        continuation["resumed_at_ps"].append(continuation["from_ps"] + continuation["steps_done"] * stride)
    else:
        start.apply(context, target.periodic)
        out, series, rec, t_now = _measured_nvt(target, context, integrator, splitting, lengths, stride, interval,
                                                reference, positions, label)
        if continue_to_ps <= 0:
            return out, series
        stab: Dict[str, Any] = {"length_ps": continue_to_ps, "splitting": splitting}
        failed = out.get("failed_at_ps")
        if failed is not None or continue_to_ps <= t_now:
            if failed is None:  # the measured run already reached the stability length
                stab["fallback"] = out["fallback"]
            t_series = rec.velocities_T
            stab.update(stable=failed is None, failed_at_ps=failed, error=out.get("error"),
                        T_min_K=float(np.min(t_series)) if t_series else math.nan,
                        T_max_K=float(np.max(t_series)) if t_series else math.nan, max_speed_nm_per_ps=rec.max_speed)
            out["stability"] = stab
            return out, series
        more = target.recorder(molecules=True)
        integrator.reset_fallback_statistics()
        continuation = {"from_ps": t_now, "steps_done": 0, "resumed_at_ps": [],
                        "measured_T_min_K": float(np.min(rec.velocities_T)),
                        "measured_T_max_K": float(np.max(rec.velocities_T)), "measured_max_speed": rec.max_speed}

    # the stability continuation, in pieces of whole sampling intervals with a checkpoint after each
    t_from = continuation["from_ps"]
    total = int(round((continue_to_ps - t_from) / stride))
    piece = interval * max(1, int(round(checkpoint_ps / (interval * stride))))
    failed, error = None, None
    while continuation["steps_done"] < total and failed is None:
        if checkpoint is not None:
            _save_continuation(checkpoint, context, out, series, continuation, more)
        steps = min(piece, total - continuation["steps_done"])
        cont = advance(context, integrator, stride, steps * stride, interval,
                       f"{label} stability to {continue_to_ps:g} ps", more,
                       t0=t_from + continuation["steps_done"] * stride, progress=target.progress)
        failed, error = cont["failed_at_ps"], cont["error"]
        continuation["steps_done"] += steps
    stab = {"length_ps": continue_to_ps, "splitting": splitting, "fallback": fallback_record(integrator)}
    series["stability_time"] = np.asarray(more.time, dtype=np.float32)
    series["stability_T_all"] = np.asarray(more.velocities_T, dtype=np.float32)
    if len(more.time):  # the long run's temperatures: the precise estimate of the NVT goals
        stab["temperature_K"] = compare.temperature_summary(
            more.temperatures(), int(lengths["blocks"]), target.temperature,
            reference.get("nvt", {}).get("temperature_K"))
        stab["temperature_from_ps"] = t_from
        _add_molecule_temperatures(stab, more, lengths, target, reference)
    stab.update(stable=failed is None, failed_at_ps=failed, error=error,
                T_min_K=min([continuation["measured_T_min_K"], *more.velocities_T]),
                T_max_K=max([continuation["measured_T_max_K"], *more.velocities_T]),
                max_speed_nm_per_ps=max(continuation["measured_max_speed"], more.max_speed),
                resumed_at_ps=continuation["resumed_at_ps"])
    out["stability"] = stab
    return out, series


def _measured_nvt(target: Target, context, integrator, splitting: str, lengths: Dict[str, float], stride: float,
                  interval: int, reference: Dict[str, Any], positions: bool, label: str
                  ) -> Tuple[Dict[str, Any], Dict[str, np.ndarray], Recorder, float]:
    """The settled and measured part of :func:`flashmd_nvt`: its summary, series, recorder and
    the simulated time it reached (ps)."""
    out: Dict[str, Any] = {"splitting": splitting, "length_ps": lengths["nvt_ps"],
                           "sample_interval_ps": interval * stride}
    settle = advance(context, integrator, stride, lengths["settle_ps"], interval, f"{label} settle",
                     progress=target.progress)
    rec = target.recorder(positions=positions, molecules=True)
    series: Dict[str, np.ndarray] = {}
    if settle["failed_at_ps"] is not None:
        out.update(failed_at_ps=settle["failed_at_ps"], error=settle["error"], completed_ps=0.0)
        return out, series, rec, 0.0
    integrator.reset_filter_statistics()
    integrator.reset_fallback_statistics()
    t_settle = settle["done_ps"]
    run = advance(context, integrator, stride, lengths["nvt_ps"], interval, label, rec, t0=t_settle,
                  progress=target.progress)
    out.update(completed_ps=run["done_ps"], failed_at_ps=run["failed_at_ps"], error=run["error"], wall_s=run["wall_s"],
               s_per_ps=run["wall_s"] / run["done_ps"] if run["done_ps"] > 0 else math.nan,
               fallback=fallback_record(integrator))
    stats = integrator.filter_statistics
    if "E" in splitting:
        out["filter"] = {"strides": stats["count"], "clamped": stats["clamped"],
                         "clamped_fraction": stats["clamped"] / stats["count"] if stats["count"] else math.nan,
                         "mean_scale": stats["mean"], "min_scale": stats["min"], "max_scale": stats["max"]}
    temps = rec.temperatures()
    if len(rec.time):
        out["temperature_K"] = compare.temperature_summary(temps, int(lengths["blocks"]), target.temperature,
                                                           reference.get("nvt", {}).get("temperature_K"))
        out["partial"] = run["failed_at_ps"] is not None
        _add_molecule_temperatures(out, rec, lengths, target, reference)
    series["time"] = np.asarray(rec.time, dtype=np.float32)
    for key, values in temps.items():
        series[f"T_{key}"] = values.astype(np.float32)
    for key, values in rec.molecule_temperatures().items():
        series[f"Tmol_{key}"] = values.astype(np.float32)
    if positions and rec.positions:
        series["positions"] = np.asarray(rec.positions, dtype=np.float32)
        series["boxes"] = np.asarray(rec.boxes, dtype=np.float32)
    return out, series, rec, t_settle + run["done_ps"]


def _add_molecule_temperatures(out: Dict[str, Any], rec: Recorder, lengths: Dict[str, float], target: Target,
                               reference: Dict[str, Any]) -> None:
    """``out["molecule_temperature_K"]``: the recorded molecules' translational and rotational
    temperatures against the target and (where it has them) reference MD; nothing without them."""
    motion = rec.molecule_temperatures()
    if motion:
        out["molecule_temperature_K"] = compare.temperature_summary(
            motion, int(lengths["blocks"]), target.temperature, reference.get("nvt", {}).get("molecule_temperature_K"))


def _save_continuation(path: Path, context, measured: Dict[str, Any], series: Dict[str, np.ndarray],
                       continuation: Dict[str, Any], recorder: Recorder) -> None:
    """Checkpoint a stability continuation (see :func:`flashmd_nvt`)."""
    arrays = {f"measured_{k}": v for k, v in series.items()}
    arrays.update({f"continued_{k}": v for k, v in recorder.snapshot().items()})
    write_run_checkpoint(path, context.createCheckpoint(), {"measured": measured, "continuation": continuation},
                         arrays)


def flashmd_npt(target: Target, model, start: State, lengths: Dict[str, float], stride: float,
                reference: Dict[str, Any], collision_rate: float = COLLISION_RATE,
                seed: int = SEED) -> Tuple[Dict, Dict[str, np.ndarray]]:
    """NpT FlashMD run ("O F E O" + MonteCarloBarostat at the target's pressure, moves as often in
    simulated time as reference MD's; thermostat and barostat random numbers from ``seed``):
    density (g/cm^3) against the reference's."""
    frequency = max(1, int(round(REFERENCE_BAROSTAT_FREQUENCY * target.timestep / stride)))
    system = target.barostat_system(frequency, seed)
    integrator = target.flashmd(system, model, "O F E O", collision_rate, seed=seed)
    context = target.context(system, integrator)
    start.apply(context, target.periodic)
    interval = max(1, int(round(lengths["sample_ps"] / stride)))
    out: Dict[str, Any] = {"splitting": "O F E O", "length_ps": lengths["npt_ps"],
                           "barostat_interval_strides": frequency, "barostat_interval_ps": frequency * stride}
    settle = advance(context, integrator, stride, lengths["npt_settle_ps"], interval, "FlashMD NpT settle",
                     progress=target.progress)
    rec = target.recorder(volume=True)
    if settle["failed_at_ps"] is None:
        run = advance(context, integrator, stride, lengths["npt_ps"], interval, "FlashMD NpT", rec,
                      t0=settle["done_ps"], progress=target.progress)
        out.update(completed_ps=run["done_ps"], failed_at_ps=run["failed_at_ps"], error=run["error"],
                   fallback=fallback_record(integrator))
    else:
        out.update(completed_ps=0.0, failed_at_ps=settle["failed_at_ps"], error=settle["error"])
    rho = compare.density(rec.volume, float(target.masses.sum()))
    if len(rho):
        out["density_g_cm3"] = compare.mean_sem(rho, int(lengths["blocks"]))
        out.update(compare.density_comparison(out["density_g_cm3"], reference["npt"]["density_g_cm3"]))
    return {"flashmd": out, "reference": reference["npt"]}, {"density": rho.astype(np.float32)}


def flashmd_nve(target: Target, model, start: State, lengths: Dict[str, float], stride: float
                ) -> Tuple[Dict, Dict[str, np.ndarray]]:
    """NVE FlashMD run without filter ("F"): temperature drift (start and end windows, K) and
    total-energy drift (kJ/mol/ps per atom, linear fit)."""
    system = copy.deepcopy(target.system)
    integrator = target.flashmd(system, model, "F")
    context = target.context(system, integrator)
    start.apply(context, target.periodic)
    interval = max(1, int(round(lengths["sample_ps"] / stride)))
    rec = target.recorder(energy=True, energy_groups=integrator.energy_force_groups)
    rec(context, 0.0)
    run = advance(context, integrator, stride, lengths["nve_ps"], interval, "FlashMD NVE F", rec,
                  progress=target.progress)
    t = np.asarray(rec.time)
    temp = np.asarray(rec.velocities_T)
    total = np.asarray(rec.potential) + np.asarray(rec.kinetic)
    out: Dict[str, Any] = {"splitting": "F", "length_ps": lengths["nve_ps"], "completed_ps": run["done_ps"],
                           "failed_at_ps": run["failed_at_ps"], "error": run["error"],
                           "start_window_ps": lengths["nve_start_ps"], "end_window_ps": lengths["nve_end_ps"],
                           "T_initial_K": float(temp[0]), "fallback": fallback_record(integrator)}
    if len(t) > 2:
        first = temp[t <= t[0] + lengths["nve_start_ps"]]
        last = temp[t >= t[-1] - lengths["nve_end_ps"]]
        out.update(T_start_K=float(first.mean()), T_end_K=float(last.mean()),
                   T_drift_K=float(last.mean() - first.mean()),
                   energy_drift_kjmol_per_ps_per_atom=float(np.polyfit(t, total, 1)[0] / target.n_atoms),
                   total_energy_range_kjmol=float(total.max() - total.min()))
    series = {"time": t.astype(np.float32), "T_all": temp.astype(np.float32), "E_total": total.astype(np.float32)}
    return out, series


def reference_md_cost(target: Target, start: State, length_ps: float) -> Dict[str, Any]:
    """Wall seconds per simulated ps of reference MD, timed over ``length_ps`` from ``start``."""
    system = copy.deepcopy(target.system)
    integrator = target.langevin()
    context = target.context(system, integrator)
    start.apply(context, target.periodic)
    timing = advance(context, integrator, target.timestep, length_ps, 1000, "reference MD timing",
                     progress=target.progress)
    return {"reference_s_per_ps": timing["wall_s"] / timing["done_ps"],
            "reference_source": f"{timing['done_ps']:g} ps of reference MD timed in this run"}
