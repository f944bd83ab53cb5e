"""The validation protocol: run lengths, and :func:`validate`, which runs every measurement of
one stride model on one :class:`~openmm_flashmd.validation.target.Target` in phases that an
interrupted validation resumes.

Phases, each from the reference MD's start state (CPU platform):

1. ``nvt_filter``: NVT, Langevin at the target's temperature, friction 1/ps, FlashMD with the
   energy filter ("O F E O"); kinetic temperature overall and per element against the target
   and reference MD; energy-filter and stride-monitor statistics; optionally continued to
   ``stability_ps`` (stability). Its frames give the RDFs of every element pair (periodic),
   φ/ψ statistics (protein backbone) and water-oxygen self-diffusion (water).
2. ``nvt_no_filter``: the same without the filter ("O F O").
3. ``npt`` (periodic Systems with a pressure): "O F E O" + MonteCarloBarostat, density.
4. ``nve``: NVE without filter ("F"): temperature and total-energy drift.
5. ``cost``: wall seconds per simulated ps of reference MD and FlashMD.

Reference MD is cached per System + settings (:mod:`openmm_flashmd.validation.reference`).
Each finished phase is written to ``work_dir/phases/<phase>.json`` + ``.npz``; ``resume``
reuses them when the validation's settings are the same (the result's ``reused_phases`` names
them; its ``wall_s`` is the last call's alone), or differ only in the NpT lengths: then the
``npt`` phase alone runs again (``phases_rerun_with_new_lengths``). The stability continuation, hours long at 1-10 ns,
checkpoints itself every ``runs.STABILITY_CHECKPOINT_PS`` and resumes from there as the
uninterrupted run would have gone on (``stability.resumed_at_ps`` lists where). Units: nm, ps, K, kJ/mol, g/cm^3.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import math
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from openmm_flashmd.validation import compare, runs
from openmm_flashmd.validation.records import read_arrays, write_arrays, write_record
from openmm_flashmd.validation.reference import load_or_run_reference, reference_paths
from openmm_flashmd.validation.sampling import State
from openmm_flashmd.validation.target import COLLISION_RATE, SEED, Target, ValidationError

#: Lengths in ps (``blocks``: number of blocks for the standard errors).
#:  equil_ps: minimisation, then reference Langevin MD to the shared start state;
#:  settle_ps / npt_settle_ps: discarded start of every NVT / NpT run;
#:  nvt_ps, ref_nvt_ps, npt_ps, ref_npt_ps, nve_ps, stability_ps: measured lengths
#:  (stability_ps counts from the start of the filtered NVT run);
#:  nve_start_ps / nve_end_ps: windows for the NVE start and end temperatures;
#:  sample_ps: sampling interval; ref_cost_ps: reference MD timed when the reference is cached.
#: ``liquid``: periodic boxes without a protein backbone; ``peptide``: Systems with one (longer
#: NVT for the slow φ/ψ statistics: 1 ns of FlashMD against 2 ns of reference MD, whose two 1 ns
#: halves give the Ramachandran comparison's own resolution; periodic ones add the liquid's NpT lengths).
LENGTHS: Dict[str, Dict[str, Dict[str, float]]] = {
    "full": {
        "liquid": dict(equil_ps=2.0, settle_ps=2.0, nvt_ps=50.0, ref_nvt_ps=100.0, npt_settle_ps=10.0, npt_ps=50.0,
                       ref_npt_ps=100.0, nve_ps=50.0, nve_start_ps=1.0, nve_end_ps=5.0, stability_ps=1000.0,
                       sample_ps=0.1, blocks=10, ref_cost_ps=2.0),
        "peptide": dict(equil_ps=2.0, settle_ps=2.0, nvt_ps=1000.0, ref_nvt_ps=2000.0, nve_ps=50.0, nve_start_ps=1.0,
                        nve_end_ps=5.0, stability_ps=1000.0, sample_ps=0.1, blocks=10, ref_cost_ps=5.0),
    },
    "quick": {
        "liquid": dict(equil_ps=0.1, settle_ps=0.05, nvt_ps=0.4, ref_nvt_ps=0.4, npt_settle_ps=0.05, npt_ps=0.4,
                       ref_npt_ps=0.4, nve_ps=0.4, nve_start_ps=0.1, nve_end_ps=0.1, stability_ps=0.8,
                       sample_ps=0.02, blocks=4, ref_cost_ps=0.1),
        "peptide": dict(equil_ps=0.1, settle_ps=0.05, nvt_ps=1.0, ref_nvt_ps=1.0, nve_ps=0.4, nve_start_ps=0.1,
                        nve_end_ps=0.1, stability_ps=1.2, sample_ps=0.02, blocks=4, ref_cost_ps=0.1),
    },
}
_NPT_KEYS = ("npt_settle_ps", "npt_ps", "ref_npt_ps")
PHASES = ("nvt_filter", "nvt_no_filter", "npt", "nve", "cost")


def protocol_lengths(target: Target, mode: str = "full", overrides: Optional[Dict[str, float]] = None
                     ) -> Dict[str, float]:
    """Run lengths (ps) of ``target`` in ``mode`` ("full" or "quick") with ``overrides``."""
    if mode not in LENGTHS:
        raise ValidationError(f"unknown lengths {mode!r}; known: {sorted(LENGTHS)}")
    kind = "peptide" if target.has_backbone else "liquid"
    lengths = dict(LENGTHS[mode][kind])
    if kind == "peptide" and target.periodic:
        lengths.update({k: LENGTHS[mode]["liquid"][k] for k in _NPT_KEYS})
    if not target.periodic or target.pressure is None:
        for key in _NPT_KEYS:
            lengths.pop(key, None)
    unknown = set(overrides or {}) - set(lengths)
    if unknown:
        raise ValidationError(f"unknown length keys {sorted(unknown)} (known: {sorted(lengths)})")
    lengths.update(overrides or {})
    bad = [k for k, v in lengths.items() if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0)]
    if bad:
        raise ValidationError(f"lengths must be non-negative numbers: {bad}")
    return lengths


def model_sha256(model) -> str:
    """Hash of a scripted model's saved bytes (identifies it in resumable settings)."""
    import io

    import torch

    buffer = io.BytesIO()
    torch.jit.save(model, buffer)
    return hashlib.sha256(buffer.getvalue()).hexdigest()


#: Lengths that only one phase reads: a resumed validation with another value of one of them
#: runs that phase again and reuses the rest (e.g. a longer NpT run for a resolved density).
PHASE_OF_LENGTH = {"npt_settle_ps": "npt", "npt_ps": "npt"}


class _Phases:
    """Finished phases of one validation in ``folder`` (JSON + arrays), for resuming.

    Resuming needs the same settings, except lengths in :data:`PHASE_OF_LENGTH`: their
    phases are run again with the new lengths (listed in ``rerun``), the others reused."""

    def __init__(self, folder: Path, settings: Dict[str, Any], resume: bool):
        self.folder = Path(folder)
        settings_path = self.folder / "settings.json"
        self.rerun: List[str] = []  # finished phases run again because their own lengths changed
        if resume and settings_path.exists():
            previous = json.loads(settings_path.read_text())
            settings = json.loads(json.dumps(settings))
            old, new = previous.get("lengths") or {}, settings.get("lengths") or {}
            lengths = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
            changed = sorted(k for k in set(previous) | set(settings)
                             if k != "lengths" and previous.get(k) != settings.get(k))
            changed += [f"lengths.{k}" for k in lengths if k not in PHASE_OF_LENGTH]
            if changed:
                raise ValidationError(f"cannot resume: the interrupted validation in {self.folder} used other "
                                      f"settings ({', '.join(changed)})")
            for phase in sorted({PHASE_OF_LENGTH[k] for k in lengths}):
                for suffix in (".json", ".npz"):
                    (self.folder / f"{phase}{suffix}").unlink(missing_ok=True)
                self.rerun.append(phase)
        elif self.folder.exists():
            shutil.rmtree(self.folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        write_record(settings_path, settings)
        self.reused: List[str] = []  # phases read back from an interrupted validation

    def run(self, name: str, work: Callable[[], Tuple[Dict[str, Any], Dict[str, np.ndarray]]]
            ) -> Tuple[Dict[str, Any], Dict[str, np.ndarray]]:
        json_path, npz_path = self.folder / f"{name}.json", self.folder / f"{name}.npz"
        if json_path.exists() and npz_path.exists():
            self.reused.append(name)
            return json.loads(json_path.read_text()), read_arrays(npz_path)
        summary, arrays = work()
        write_arrays(npz_path, arrays)
        write_record(json_path, summary)  # written last: its presence marks the phase finished
        return summary, arrays


def validate(model, target: Target, out_dir: Path, *, stem: str = "validation", lengths_mode: str = "full",
             overrides: Optional[Dict[str, float]] = None, cache_dir: Optional[Path] = None,
             work_dir: Optional[Path] = None, stability: bool = True, stability_reason: str = "",
             collision_rate: float = COLLISION_RATE, resume: bool = False, overwrite_reference: bool = False,
             model_source: Optional[str] = None, reference_by_settings: bool = False,
             stack: Optional[Dict[str, Any]] = None) -> Path:
    """Validate the stride ``model`` (a loaded model) on ``target`` against reference MD.

    Writes ``out_dir/<stem>.json`` (every number; see the module docstring), ``<stem>.npz``
    (series) and ``<stem>-*.png`` plots; returns the JSON's path. Reference MD is read from
    or written to ``cache_dir`` (default ``out_dir``); phases go to ``work_dir`` (default
    ``out_dir/work-<stem>``). ``collision_rate`` (1/ps) is FlashMD's Langevin friction;
    reference MD keeps ``COLLISION_RATE``. ``stability`` continues the filtered NVT run to
    ``stability_ps``. ``reference_by_settings``: cached references are named by their settings
    hash too, so that references with other settings (say quick and full lengths) coexist;
    otherwise one per System, replaced only with ``overwrite_reference``. Raises :class:`ValidationError` (one line) before anything is written
    when the model does not fit the System.
    """
    from openmm_flashmd import read_metadata
    from openmm_flashmd.validation import plots

    began = time.perf_counter()
    out_dir = Path(out_dir)
    cache_dir = Path(cache_dir) if cache_dir is not None else out_dir
    work_dir = Path(work_dir) if work_dir is not None else out_dir / f"work-{stem}"
    lengths = protocol_lengths(target, lengths_mode, overrides)
    metadata = read_metadata(model)
    stride = float(metadata["stride"])
    target.check_model(model)

    settings = {"model_sha256": model_sha256(model), "system": target.name, "lengths": lengths,
                "temperature_K": target.temperature, "pressure_bar": target.pressure,
                "collision_rate_per_ps": collision_rate, "fallback": target.fallback, "stability": bool(stability),
                "seed": SEED, "reference_timestep_ps": target.timestep}
    phases = _Phases(work_dir / "phases", settings, resume)
    reference, ref_arrays, ran_reference = load_or_run_reference(target, lengths, cache_dir, overwrite_reference,
                                                                 stack, reference_by_settings)
    start = State(ref_arrays["start_positions"], ref_arrays["start_velocities"], ref_arrays["start_box"])
    blocks = int(lengths["blocks"])
    stride_fs = stride * 1000

    result: Dict[str, Any] = {
        "benchmark": "validation-model", "model": stem, "model_source": str(model_source or stem),
        "system": target.name, "stride_ps": stride, "n_atoms": target.n_atoms, "lengths_mode": lengths_mode,
        "lengths": lengths, "overrides": dict(overrides or {}), "temperature_K": target.temperature,
        "collision_rate_per_ps": collision_rate, "seed": SEED, "fallback": target.fallback,
        "model_metadata": {k: metadata.get(k) for k in ("kind", "hypers", "validation", "cutoff")},
        "reference": {"file": reference_paths(cache_dir, target, lengths, reference_by_settings)[0].name,
                      "settings_hash": reference.get("settings_hash"),
                      "computed_in_this_run": ran_reference},
    }
    series: Dict[str, np.ndarray] = {}
    plot_names = []

    # 1 (+ stability) and 2: NVT with and without the filter
    stability_to = lengths["stability_ps"] if stability else 0.0
    continuation = phases.folder / "nvt_filter-continuation.npz"  # the stability run's checkpoint
    nvt_f, series_f = phases.run("nvt_filter", lambda: runs.flashmd_nvt(
        target, model, "O F E O", start, lengths, stride, reference, True, stability_to, collision_rate,
        checkpoint=continuation, checkpoint_ps=runs.STABILITY_CHECKPOINT_PS))
    continuation.unlink(missing_ok=True)
    nvt_n, series_n = phases.run("nvt_no_filter", lambda: runs.flashmd_nvt(
        target, model, "O F O", start, lengths, stride, reference, False, collision_rate=collision_rate))
    nvt_f = dict(nvt_f)
    stab = nvt_f.pop("stability", None)
    result["nvt"] = {"filter": nvt_f, "no_filter": nvt_n, "reference": reference.get("nvt")}
    result["stability"] = {"ran": bool(stability), "reason": stability_reason, **(stab or {})}
    for prefix, s in (("nvt_filter", series_f), ("nvt_no_filter", series_n)):
        series.update({f"{prefix}_{k}": v for k, v in s.items() if k not in ("positions", "boxes")})
    ref_series = {"time": ref_arrays["nvt_time"]}
    ref_series.update({k[4:]: v for k, v in ref_arrays.items() if k.startswith("nvt_T_")})
    plot = out_dir / f"{stem}-temperature.png"
    plots.plot_temperatures(plot, {"FlashMD + filter": series_f, "FlashMD, no filter": series_n,
                                   "reference MD": ref_series}, target.temperature,
                            window_ps=max(lengths["nvt_ps"] / 50, lengths["sample_ps"]))
    plot_names.append(plot.name)

    frames = series_f.get("positions")
    traj = None
    if frames is not None and len(frames):
        traj = compare.trajectory(target.topology, frames, series_f["boxes"] if target.periodic else None)

    # structure, dynamics and density (periodic Systems)
    if "rdf_r" in ref_arrays:
        result["rdf"] = {}
        if traj is not None:
            result["rdf"], curves = compare.rdf_comparison(traj, float(reference["rdf_r_max_nm"]), ref_arrays)
            for pair, pair_curves in curves.items():
                pair_curves["FlashMD + filter"] = pair_curves.pop("FlashMD")
                series[f"rdf_{pair}"] = pair_curves["FlashMD + filter"].astype(np.float32)
            series["rdf_r"] = ref_arrays["rdf_r"].astype(np.float32)
            plot = out_dir / f"{stem}-rdf.png"
            plots.plot_rdfs(plot, ref_arrays["rdf_r"], curves)
            plot_names.append(plot.name)
    if reference.get("diffusion_water_O_nm2_per_ps") is not None:
        value = None
        if traj is not None:
            value = compare.water_oxygen_diffusion(target.topology, series_f["time"], frames, series_f["boxes"],
                                                   nvt_f.get("completed_ps") or 0.0)
        ref_value = reference["diffusion_water_O_nm2_per_ps"]
        result["diffusion"] = {"water_O_nm2_per_ps": value, "reference_water_O_nm2_per_ps": ref_value,
                               "relative_difference_percent": compare.relative_difference(value, ref_value),
                               "fit_window_ps": list(compare.diffusion_fit_window(nvt_f.get("completed_ps") or 0.0))}
    if "npt" in reference and lengths.get("npt_ps", 0) > 0:
        result["npt"], npt_series = phases.run("npt", lambda: runs.flashmd_npt(
            target, model, start, lengths, stride, reference, collision_rate))
        series["npt_density"] = npt_series["density"]

    # backbone φ/ψ
    if "phi" in ref_arrays:
        rama: Dict[str, Any] = {"bins": compare.RAMACHANDRAN_BINS, "js_units": "nats",
                                "js_reference_halves": reference.get("js_between_halves"),
                                "basins": {"reference": reference.get("basins")}}
        if traj is not None and traj.n_frames >= 2:
            phi, psi = compare.backbone_dihedrals(traj)
            rama["js_divergence"] = compare.ramachandran_js(phi, psi, ref_arrays["phi"], ref_arrays["psi"])
            rama["frames"] = int(len(phi))
            rama["basins"]["flashmd"] = compare.basins(phi, psi, blocks)
            series["phi"], series["psi"] = phi.astype(np.float32), psi.astype(np.float32)
            plot = out_dir / f"{stem}-ramachandran.png"
            from openmm_flashmd.analysis.dihedrals import ramachandran_histogram

            plots.plot_ramachandran(plot, {
                "reference MD": ramachandran_histogram(ref_arrays["phi"], ref_arrays["psi"], compare.RAMACHANDRAN_BINS),
                f"FlashMD {stride_fs:g} fs + filter": ramachandran_histogram(phi, psi, compare.RAMACHANDRAN_BINS)})
            plot_names.append(plot.name)
        result["ramachandran"] = rama

    # 4: NVE without filter
    nve, nve_series = phases.run("nve", lambda: runs.flashmd_nve(target, model, start, lengths, stride))
    result["nve"] = nve
    series.update({f"nve_{k}": v for k, v in nve_series.items()})
    if len(nve_series["time"]) > 1:
        plot = out_dir / f"{stem}-nve.png"
        plots.plot_nve(plot, nve_series["time"], nve_series["T_all"], target.temperature)
        plot_names.append(plot.name)

    # 5: cost
    def cost_phase():
        if ran_reference:
            return {"reference_s_per_ps": reference["cost"]["reference_s_per_ps"],
                    "reference_source": "reference NVT run"}, {}
        return runs.reference_md_cost(target, start, lengths["ref_cost_ps"]), {}

    cost = dict(phases.run("cost", cost_phase)[0])
    cost["flashmd_s_per_ps"] = nvt_f.get("s_per_ps", math.nan)
    cost["flashmd_source"] = 'FlashMD NVT "O F E O" run (step calls only' + (
        ", fallback strides included)" if target.fallback else ")")
    cost["speedup"] = (cost["reference_s_per_ps"] / cost["flashmd_s_per_ps"]
                       if cost["flashmd_s_per_ps"] and math.isfinite(cost["flashmd_s_per_ps"]) else math.nan)
    if nvt_f.get("failed_at_ps") is not None:  # an exploded system's neighbour lists are not representative
        cost["speedup"] = math.nan
        cost["flashmd_source"] += f", failed after {nvt_f.get('completed_ps', 0):g} ps: not representative"
    cost["reference_timestep_ps"] = target.timestep
    result["cost"] = cost

    result["plots"] = plot_names
    result["wall_s"] = time.perf_counter() - began  # this call's; phases it reused ran in an earlier one
    result["reused_phases"] = phases.reused
    result["phases_rerun_with_new_lengths"] = phases.rerun
    result["date"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    if stack is not None:
        result["stack"] = stack
    write_arrays(out_dir / f"{stem}.npz", series)
    out_json = out_dir / f"{stem}.json"
    write_record(out_json, result)
    return out_json
