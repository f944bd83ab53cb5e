"""More runs for a validation: independent runs pooled with the first into one mean ± standard error.

A validation compares one NVT and one NpT run of FlashMD with one of each of reference MD. When
their standard errors leave a comparison unresolved, further runs from the same start state with
other random seeds (Langevin thermostat, Monte Carlo barostat and, for FlashMD, the random
rotations) add independent samples without repeating the rest of the validation:

- :func:`add_model_density_run`: another NpT run of a validated model;
- :func:`add_reference_density_run`: another NpT run of reference MD;
- :func:`add_reference_nvt_run`: another NVT run of reference MD (temperatures, molecule
  temperatures, RDFs and water-oxygen diffusion of a periodic System);
- :func:`add_model_nvt_run`: another filtered NVT run of a validated model (temperatures, RDFs);
- :func:`compare_again`: every model result compared with its (changed) reference again.

Each run keeps its own record (seed, length, its own numbers, failure) in the entry's ``runs``;
the entry's numbers become the pool of the runs that completed, each weighted by its length
(:func:`pool`); RDF curves are pooled weighted by their frames. After a reference run every model
result that used the reference is compared with the pool again (:func:`compare_result`), so the
goal table follows; each pooled run of a model also records its own RDF difference.

Units: ps, K, g/cm^3, nm^2/ps, %.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from openmm_flashmd.validation import compare
from openmm_flashmd.validation.records import read_arrays, write_arrays, write_record
from openmm_flashmd.validation.reference import reference_npt, reference_nvt
from openmm_flashmd.validation.runs import flashmd_npt, flashmd_nvt
from openmm_flashmd.validation.sampling import State
from openmm_flashmd.validation.target import COLLISION_RATE, SEED, Target, ValidationError

#: Keys of an NpT entry (a model's ``npt.flashmd`` or a reference's ``npt``) that describe one run.
NPT_RUN_KEYS = ("length_ps", "completed_ps", "failed_at_ps", "error", "fallback", "density_g_cm3")
#: Keys of a reference's ``nvt`` entry that describe one run.
NVT_RUN_KEYS = ("length_ps", "temperature_K", "molecule_temperature_K", "rdf_frames", "diffusion_water_O_nm2_per_ps")
#: Keys of a model's filtered NVT entry (``nvt.filter``) that describe one run.
MODEL_NVT_RUN_KEYS = ("length_ps", "completed_ps", "failed_at_ps", "error", "fallback", "filter", "temperature_K",
                      "molecule_temperature_K", "rdf_frames")
#: Temperature sections of a model result compared with reference MD's NVT temperatures.
_TEMPERATURE_SECTIONS = (("nvt", "filter"), ("nvt", "no_filter"), ("stability",))


def pool(weighted: Sequence[Tuple[float, Dict[str, Any]]]) -> Dict[str, float]:
    """Weighted mean ± standard error of independent estimates ``(weight, {"mean", "sem"})``
    (weights: run lengths; any sem None or NaN makes the pool's sem NaN)."""
    if not weighted:
        raise ValueError("nothing to pool")
    total = sum(float(w) for w, _ in weighted)
    shares = [(float(w) / total, entry) for w, entry in weighted]
    mean = sum(share * entry["mean"] for share, entry in shares)
    sems = [entry.get("sem") for _, entry in shares]
    if any(s is None or not math.isfinite(s) for s in sems):
        return {"mean": mean, "sem": math.nan}
    return {"mean": mean, "sem": math.sqrt(sum((share * s) ** 2 for (share, _), s in zip(shares, sems)))}


def pooled_mean_sem(runs: Sequence[Dict[str, Any]]) -> Dict[str, float]:
    """The length-weighted density (g/cm^3) of NpT runs, each ``{"length_ps", "density_g_cm3"}``."""
    return pool([(run["length_ps"], run["density_g_cm3"]) for run in runs])


def _runs(entry: Dict[str, Any], keys: Sequence[str], **first_extra) -> List[Dict[str, Any]]:
    """The runs of an entry: its ``runs``, or the one run a validation measured (seed
    :data:`~openmm_flashmd.validation.target.SEED`; its length the completed one where recorded)."""
    if entry.get("runs"):
        return [dict(run) for run in entry["runs"]]
    first = {"seed": SEED, **{k: entry[k] for k in keys if k in entry}, **first_extra}
    if first.get("completed_ps") is not None:
        first["length_ps"] = first["completed_ps"]
    return [first]


def npt_runs(entry: Dict[str, Any]) -> List[Dict[str, Any]]:
    """The runs of an NpT entry (a model's ``npt.flashmd`` or a reference's ``npt``)."""
    return _runs(entry, NPT_RUN_KEYS)


def _check_seed(runs: List[Dict[str, Any]], seed: int, where: object) -> None:
    if any(int(run["seed"]) == int(seed) for run in runs):
        raise ValidationError(f"{where} already has a run with seed {seed}; add runs with other seeds")


def _new_run(run: Dict[str, Any], keys: Sequence[str], seed: int) -> Dict[str, Any]:
    new = {"seed": int(seed), **{k: run[k] for k in keys if k in run}}
    if new.get("completed_ps") is not None:
        new["length_ps"] = new["completed_ps"]
    return new


def pool_npt_run(entry: Dict[str, Any], run: Dict[str, Any], seed: int) -> Dict[str, Any]:
    """A copy of the NpT ``entry`` with ``run`` (a summary from :func:`~openmm_flashmd.validation.runs.
    flashmd_npt` or :func:`~openmm_flashmd.validation.reference.reference_npt`, made with ``seed``)
    added to its runs and ``density_g_cm3`` the pool of the runs that completed without failure.
    Raises :class:`ValidationError` for a seed the entry already has."""
    runs = npt_runs(entry)
    _check_seed(runs, seed, "the NpT entry")
    runs.append(_new_run(run, NPT_RUN_KEYS, seed))
    pooled = [r for r in runs if r.get("failed_at_ps") is None and r.get("density_g_cm3")]
    out = copy.deepcopy(entry)
    out["runs"] = runs
    out["density_g_cm3"] = pooled_mean_sem(pooled)
    out["pooled_length_ps"] = sum(float(r["length_ps"]) for r in pooled)
    return out


def _pool_temperatures(runs: List[Dict[str, Any]], key: str, target_K: float) -> Optional[Dict[str, Dict]]:
    """The runs' ``key`` temperatures pooled, for the names every run has (None: a run has none)."""
    if not all(run.get(key) for run in runs):
        return None
    out = {}
    for name in runs[0][key]:
        if all(name in run[key] for run in runs):
            entry = pool([(run["length_ps"], run[key][name]) for run in runs])
            out[name] = {**entry, "dev_target": entry["mean"] - target_K}
    return out


def _pool_rdfs(arrays: Dict[str, np.ndarray], runs: List[Dict[str, Any]], run_arrays: Dict[str, np.ndarray],
               seed: int) -> Dict[str, np.ndarray]:
    """A copy of ``arrays`` whose ``rdf_<pair>`` curves pool ``runs`` (each weighted by its
    ``rdf_frames``), the new run's curves (``run_arrays``, made with ``seed``) added; each run's
    curve is kept as ``rdf_<pair>_seed<seed>``."""
    out = dict(arrays)
    pairs = [k[4:] for k in arrays if k.startswith("rdf_") and k != "rdf_r" and "_seed" not in k]
    for pair in pairs:
        first = f"rdf_{pair}_seed{SEED}"
        if first not in out:
            out[first] = arrays[f"rdf_{pair}"]
        out[f"rdf_{pair}_seed{seed}"] = np.asarray(run_arrays[f"rdf_{pair}"], dtype=np.float32)
        out[f"rdf_{pair}"] = _frame_weighted(out, pair, runs).astype(np.float32)
    return out


def _frame_weighted(arrays: Dict[str, np.ndarray], pair: str, runs: List[Dict[str, Any]]) -> np.ndarray:
    """The RDF of ``pair`` pooled over ``runs``: their curves ``rdf_<pair>_seed<seed>``, weighted by frames."""
    curves = [(r["rdf_frames"], np.asarray(arrays[f"rdf_{pair}_seed{r['seed']}"], dtype=np.float64)) for r in runs]
    return sum(w * g for w, g in curves) / sum(w for w, _ in curves)


def _pooled_temperatures(entry: Dict[str, Any], runs: List[Dict[str, Any]], target_K: float) -> Dict[str, Any]:
    """A copy of an NVT ``entry`` with ``runs`` and its temperatures (and molecule temperatures)
    pooled over them; a quantity the first run did not record (an older result) stays unrecorded:
    a pool of the later runs alone would not be what the entry stood for."""
    out = {**copy.deepcopy(entry), "runs": runs, "pooled_length_ps": sum(float(r["length_ps"]) for r in runs)}
    for key in ("temperature_K", "molecule_temperature_K"):
        pooled = _pool_temperatures(runs, key, target_K)
        if pooled:
            out[key] = pooled
    return out


def pool_reference_nvt_run(reference: Dict[str, Any], arrays: Dict[str, np.ndarray], run: Dict[str, Any],
                run_arrays: Dict[str, np.ndarray], extras: Dict[str, Any], seed: int
                ) -> Tuple[Dict[str, Any], Dict[str, np.ndarray]]:
    """Copies of a reference record and its arrays with the NVT ``run`` (summary, arrays and extras
    of :func:`~openmm_flashmd.validation.reference.reference_nvt`, made with ``seed``) pooled in:
    temperatures and molecule temperatures weighted by length, ``rdf_<pair>`` by frames
    (:func:`_pool_rdfs`), the water-oxygen diffusion by length. Raises :class:`ValidationError`
    for a seed the reference already has."""
    first_extra = {"diffusion_water_O_nm2_per_ps": reference.get("diffusion_water_O_nm2_per_ps")}
    if "nvt_time" in arrays and "rdf_r" in arrays:
        first_extra["rdf_frames"] = int(len(arrays["nvt_time"]))
    runs = _runs(reference["nvt"], NVT_RUN_KEYS, **first_extra)
    _check_seed(runs, seed, "the reference's NVT")
    runs.append(_new_run({**run, "rdf_frames": extras.get("rdf_frames"),
                          "diffusion_water_O_nm2_per_ps": extras.get("diffusion")}, NVT_RUN_KEYS, seed))
    out = copy.deepcopy(reference)
    out["nvt"] = _pooled_temperatures(reference["nvt"], runs, float(reference["settings"]["temperature_K"]))
    diffusion = [(r["length_ps"], r.get("diffusion_water_O_nm2_per_ps")) for r in runs]
    if all(d is not None for _, d in diffusion):
        out["diffusion_water_O_nm2_per_ps"] = sum(w * d for w, d in diffusion) / sum(w for w, _ in diffusion)
    pooled_arrays = _pool_rdfs(arrays, runs, run_arrays, seed)
    if "rdf_r" in arrays:
        out["nvt"]["rdf_noise"] = rdf_noise(pooled_arrays, runs)
    return out, pooled_arrays


def rdf_noise(arrays: Dict[str, np.ndarray], runs: List[Dict[str, Any]]) -> Dict[str, Any]:
    """What the RDF comparison reads between exact dynamics and itself: the integrated absolute
    difference (%) of the first run's RDF (``rdf_<pair>_seed<first>`` in ``arrays``) from the
    pool of the later runs, per pair, with the two lengths (ps): the comparison's noise at the
    first run's length."""
    from openmm_flashmd.analysis.structure import rdf_difference

    first, rest = runs[0], runs[1:]
    out: Dict[str, Any] = {"first_ps": first["length_ps"], "rest_ps": sum(float(r["length_ps"]) for r in rest),
                           "difference_percent": {}}
    pairs = [k[4:] for k in arrays if k.startswith("rdf_") and k != "rdf_r" and "_seed" not in k]
    for pair in pairs:
        g_rest = _frame_weighted(arrays, pair, rest)
        if np.any(g_rest > 0):
            out["difference_percent"][pair] = 100.0 * rdf_difference(
                arrays["rdf_r"], arrays[f"rdf_{pair}_seed{first['seed']}"], g_rest)
    return out


def pool_model_nvt_run(result: Dict[str, Any], arrays: Dict[str, np.ndarray], run: Dict[str, Any],
                      run_arrays: Dict[str, np.ndarray], seed: int) -> Tuple[Dict[str, Any], Dict[str, np.ndarray]]:
    """Copies of a model result and its arrays with another filtered NVT run (``run``: the summary of
    :func:`~openmm_flashmd.validation.runs.flashmd_nvt` with ``rdf_frames``; ``run_arrays``: its
    ``rdf_<pair>`` curves; made with ``seed``) pooled into ``nvt.filter`` (temperatures by length)
    and the RDFs (by frames), when it completed; a failed run is recorded, not pooled. Compare the
    result with its reference again afterwards (:func:`compare_nvt`)."""
    frames = [entry.get("frames") for entry in (result.get("rdf") or {}).values()]
    runs = _runs(result["nvt"]["filter"], MODEL_NVT_RUN_KEYS, rdf_frames=frames[0] if frames else None)
    _check_seed(runs, seed, "the model's NVT")
    runs.append(_new_run(run, MODEL_NVT_RUN_KEYS, seed))
    pooled = [r for r in runs if r.get("failed_at_ps") is None]
    out = copy.deepcopy(result)
    out["nvt"]["filter"] = {**_pooled_temperatures(result["nvt"]["filter"], pooled, float(result["temperature_K"])),
                            "runs": runs}
    if run.get("failed_at_ps") is not None or not frames:
        return out, dict(arrays)
    for entry in out["rdf"].values():
        entry["frames"] = sum(int(r["rdf_frames"]) for r in pooled)
    return out, _pool_rdfs(arrays, pooled, run_arrays, seed)


def compare_nvt(result: Dict[str, Any], reference: Dict[str, Any], result_arrays: Dict[str, np.ndarray],
                reference_arrays: Dict[str, np.ndarray]) -> Dict[str, Any]:
    """A copy of a model result compared again with the reference record (and arrays) of its
    System: temperatures and molecule temperatures of its NVT runs and stability run, the RDFs
    of its filtered NVT run (``rdf_<pair>`` of its arrays), the water-oxygen diffusion."""
    out = copy.deepcopy(result)
    ref_nvt = reference["nvt"]
    for path in _TEMPERATURE_SECTIONS:
        section = out
        for key in path:
            section = (section or {}).get(key)
        for key in ("temperature_K", "molecule_temperature_K"):
            for name, entry in ((section or {}).get(key) or {}).items():
                compare.add_deviation_from_reference(entry, (ref_nvt.get(key) or {}).get(name))
    if "nvt" in out:
        out["nvt"]["reference"] = copy.deepcopy(ref_nvt)
    from openmm_flashmd.analysis.structure import rdf_difference

    pooled_runs = ((out.get("nvt") or {}).get("filter") or {}).get("runs") or []
    for pair, entry in (out.get("rdf") or {}).items():
        g, g_ref = result_arrays.get(f"rdf_{pair}"), reference_arrays.get(f"rdf_{pair}")
        if entry.get("difference_percent") is None or g is None or g_ref is None:
            continue
        entry["difference_percent"] = 100.0 * rdf_difference(reference_arrays["rdf_r"], g, g_ref)
        for run in pooled_runs:  # each pooled run alone: how much of the difference its window's noise was
            g_run = result_arrays.get(f"rdf_{pair}_seed{run['seed']}")
            if g_run is not None:
                run.setdefault("rdf_difference_percent", {})[pair] = 100.0 * rdf_difference(
                    reference_arrays["rdf_r"], g_run, g_ref)
    diffusion = out.get("diffusion")
    if diffusion and reference.get("diffusion_water_O_nm2_per_ps") is not None:
        diffusion["reference_water_O_nm2_per_ps"] = reference["diffusion_water_O_nm2_per_ps"]
        diffusion["relative_difference_percent"] = compare.relative_difference(
            diffusion.get("water_O_nm2_per_ps"), reference["diffusion_water_O_nm2_per_ps"])
    return out


def compare_densities(model_npt: Dict[str, Any], reference_npt: Dict[str, Any]) -> Dict[str, Any]:
    """A copy of a model result's ``npt`` section (``flashmd`` and ``reference``) compared again with
    ``reference_npt``, the reference's (possibly pooled) NpT entry."""
    out = copy.deepcopy(model_npt)
    out["reference"] = copy.deepcopy(reference_npt)
    flashmd = out["flashmd"]
    if flashmd.get("density_g_cm3"):
        flashmd.update(compare.density_comparison(flashmd["density_g_cm3"], reference_npt["density_g_cm3"]))
    return out


def compare_result(result: Dict[str, Any], reference: Dict[str, Any], result_arrays: Dict[str, np.ndarray],
                   reference_arrays: Dict[str, np.ndarray]) -> Dict[str, Any]:
    """A copy of a model result compared again with its reference: :func:`compare_nvt` and, with
    an NpT run, :func:`compare_densities`."""
    out = compare_nvt(result, reference, result_arrays, reference_arrays)
    if "npt" in out and "npt" in reference:
        out["npt"] = compare_densities(out["npt"], reference["npt"])
    return out


# --------------------------------------------------------------------------- drivers (files in, files out)
def _read(path: Path) -> Dict[str, Any]:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ValidationError(f"cannot read {path}: {exc}") from None


def _add_series(npz: Path, key: str, series: np.ndarray) -> None:
    arrays = read_arrays(npz) if npz.exists() else {}
    arrays[key] = series.astype(np.float32)
    write_arrays(npz, arrays)


def _start(arrays: Dict[str, np.ndarray]) -> State:
    return State(arrays["start_positions"], arrays["start_velocities"], arrays["start_box"])


def compare_again(out_dir: Path, system: str) -> List[Path]:
    """Compare every model result in ``out_dir`` validated on ``system`` against the reference
    ``out_dir/reference-<system>.json`` (the same settings hash) with it again
    (:func:`compare_result`) and rewrite it. Returns the files rewritten."""
    json_path, npz_path = _reference_files(out_dir, system)
    reference, reference_arrays = _read(json_path), read_arrays(npz_path)
    written = []
    for path in sorted(Path(out_dir).glob("*.json")):
        record = _read(path)
        if (record.get("benchmark") != "validation-model" or record.get("system") != system
                or (record.get("reference") or {}).get("settings_hash") != reference.get("settings_hash")):
            continue
        npz = path.with_suffix(".npz")
        write_record(path, compare_result(record, reference, read_arrays(npz) if npz.exists() else {},
                                          reference_arrays))
        written.append(path)
    return written


def _reference_files(out_dir: Path, system: str) -> Tuple[Path, Path]:
    return Path(out_dir) / f"reference-{system}.json", Path(out_dir) / f"reference-{system}.npz"


def add_reference_density_run(out_dir: Path, system: str, length_ps: float, seed: int,
                              threads: Optional[int] = None, progress: bool = True) -> List[Path]:
    """Run reference MD's NpT again from its start state with ``seed`` for ``length_ps``, pool it
    into ``out_dir/reference-<system>.json`` (series in its ``.npz`` as ``npt_density_seed<seed>``)
    and compare every model result there that used this reference with the pool again. Returns the
    files rewritten. Raises :class:`ValidationError` (one line) before running when the reference
    has no NpT run or already has ``seed``."""
    json_path, npz_path = _reference_files(out_dir, system)
    reference = _read(json_path)
    if "npt" not in reference:
        raise ValidationError(f"{json_path} has no NpT run to add to")
    _check_seed(npt_runs(reference["npt"]), seed, json_path)
    target = Target.builtin(system, threads, progress=progress)
    run, rho = reference_npt(target, _start(read_arrays(npz_path)), dict(reference["settings"]["lengths"]),
                             length_ps, seed)
    reference = _read(json_path)  # as it is now: another run may have been added meanwhile
    reference["npt"] = pool_npt_run(reference["npt"], run, seed)
    _add_series(npz_path, f"npt_density_seed{seed}", rho)
    write_record(json_path, reference)
    return [json_path] + compare_again(out_dir, system)


def add_reference_nvt_run(out_dir: Path, system: str, length_ps: float, seed: int,
                          threads: Optional[int] = None, progress: bool = True) -> List[Path]:
    """Run reference MD's NVT again from its start state with ``seed`` for ``length_ps``, pool it
    into ``out_dir/reference-<system>.json`` and ``.npz`` (:func:`pool_reference_nvt_run`) and compare every
    model result there that used this reference with the pool again (:func:`compare_nvt`).
    Returns the files rewritten. Raises :class:`ValidationError` (one line) before running when
    the reference already has ``seed`` or its System has a backbone (Ramachandran references are
    not pooled)."""
    json_path, npz_path = _reference_files(out_dir, system)
    reference = _read(json_path)
    arrays = read_arrays(npz_path)
    if "phi" in arrays:
        raise ValidationError(f"{json_path}: references with a Ramachandran comparison are not pooled; "
                              "run a longer reference instead")
    _check_seed(_runs(reference["nvt"], NVT_RUN_KEYS), seed, f"{json_path}'s NVT")
    target = Target.builtin(system, threads, progress=progress)
    integrator = target.langevin(seed=seed)
    context = target.context(copy.deepcopy(target.system), integrator)
    _start(arrays).apply(context, target.periodic)
    run, run_arrays, extras = reference_nvt(target, context, integrator, dict(reference["settings"]["lengths"]),
                                            length_ps)
    reference = _read(json_path)  # as it is now: another run may have been added meanwhile
    reference, arrays = pool_reference_nvt_run(reference, read_arrays(npz_path), run, run_arrays, extras, seed)
    write_arrays(npz_path, arrays)
    write_record(json_path, reference)
    return [json_path] + compare_again(out_dir, system)


def _model_and_reference(out_dir: Path, name: str, model_arg: Optional[str], threads: Optional[int],
                         progress: bool) -> Tuple[Path, Dict[str, Any], Any, float, Path, Dict[str, Any], Target]:
    """The validation ``out_dir/<name>.json``: its path and record, the model it validated
    (``model_arg``, default: the bundled model of that name, else the result's ``model_source``;
    refused unless it carries the metadata the result recorded), its stride (ps), its reference's
    path and record (refused unless the one it was compared with) and the Target."""
    import torch

    from openmm_flashmd import load_model, read_metadata
    from openmm_flashmd.model.bundled import bundled_models

    json_path = Path(out_dir) / f"{name}.json"
    result = _read(json_path)
    model_arg = model_arg or (name if name in bundled_models() else result.get("model_source"))
    model = load_model(model_arg)
    metadata = read_metadata(model)
    recorded = result.get("model_metadata") or {}
    if any(metadata.get(k) != recorded.get(k) for k in recorded):
        raise ValidationError(f"the model {model_arg!r} is not the one {json_path} validated (its metadata differ); "
                              "pass the model it was validated with")
    reference_json = Path(out_dir) / result["reference"]["file"]
    reference = _read(reference_json)
    if reference.get("settings_hash") != result["reference"].get("settings_hash"):
        raise ValidationError(f"{reference_json} is not the reference {json_path} was compared with")
    if threads:
        torch.set_num_threads(threads)
    target = Target.builtin(result["system"], threads, result.get("fallback", True), progress)
    return json_path, result, model, float(metadata["stride"]), reference_json, reference, target


def add_model_density_run(out_dir: Path, name: str, length_ps: float, seed: int, model_arg: Optional[str] = None,
                          threads: Optional[int] = None, progress: bool = True) -> List[Path]:
    """Run the NpT phase of the validation ``out_dir/<name>.json`` again with ``seed`` for
    ``length_ps`` (from the reference's start state, the validation's settle length, friction and
    sampling), pool it into the result (series in its ``.npz`` as ``npt_density_seed<seed>``) and
    compare the pool with the reference's. The model: see :func:`_model_and_reference`. Returns
    the file rewritten. Raises :class:`ValidationError` (one line) before running on a mismatch."""
    json_path, result, model, stride, reference_json, reference, target = _model_and_reference(
        out_dir, name, model_arg, threads, progress)
    if "npt" not in result:
        raise ValidationError(f"{json_path} has no NpT run to add to")
    _check_seed(npt_runs(result["npt"]["flashmd"]), seed, json_path)
    lengths = {**result["lengths"], "npt_ps": float(length_ps)}
    npt, series = flashmd_npt(target, model, _start(read_arrays(reference_json.with_suffix(".npz"))), lengths,
                              stride, reference, result.get("collision_rate_per_ps", COLLISION_RATE), seed)
    result, reference = _read(json_path), _read(reference_json)  # as they are now: runs may have been added meanwhile
    result["npt"]["flashmd"] = pool_npt_run(result["npt"]["flashmd"], npt["flashmd"], seed)
    _add_series(json_path.with_suffix(".npz"), f"npt_density_seed{seed}", series["density"])
    write_record(json_path, compare_result(result, reference, read_arrays(json_path.with_suffix(".npz")),
                                           read_arrays(reference_json.with_suffix(".npz"))))
    return [json_path]


def add_model_nvt_run(out_dir: Path, name: str, length_ps: float, seed: int, model_arg: Optional[str] = None,
                      threads: Optional[int] = None, progress: bool = True) -> List[Path]:
    """Run the filtered NVT run ("O F E O") of the validation ``out_dir/<name>.json`` again with
    ``seed`` for ``length_ps`` (from the reference's start state, the validation's settle length,
    friction and sampling), pool its temperatures and RDFs into the result
    (:func:`pool_model_nvt_run`) and compare it with its reference again. The stability run and
    the run without the filter are left as they are. Returns the file rewritten. Raises
    :class:`ValidationError` (one line) before running on a mismatch."""
    json_path, result, model, stride, reference_json, reference, target = _model_and_reference(
        out_dir, name, model_arg, threads, progress)
    frames_known = all(entry.get("frames") for entry in (result.get("rdf") or {}).values())
    if not result.get("rdf") or not frames_known:
        raise ValidationError(f"{json_path} has no RDFs with their frame counts to pool into")
    _check_seed(_runs(result["nvt"]["filter"], MODEL_NVT_RUN_KEYS), seed, json_path)
    lengths = {**result["lengths"], "nvt_ps": float(length_ps)}
    run, series = flashmd_nvt(target, model, "O F E O", _start(read_arrays(reference_json.with_suffix(".npz"))),
                                   lengths, stride, reference, True,
                                   collision_rate=result.get("collision_rate_per_ps", COLLISION_RATE), seed=seed)
    run_arrays: Dict[str, np.ndarray] = {}
    if series.get("positions") is not None and len(series["positions"]):
        traj = compare.trajectory(target.topology, series["positions"], series["boxes"])
        run["rdf_frames"] = traj.n_frames
        run_arrays = {f"rdf_{pair}": g for pair, (_, g) in
                      compare.rdfs(traj, list(result["rdf"]), float(reference["rdf_r_max_nm"])).items()}
    elif run.get("failed_at_ps") is None:
        run["failed_at_ps"], run["error"] = run.get("completed_ps", 0.0), "no frames recorded"
    result, reference = _read(json_path), _read(reference_json)  # as they are now: runs may have been added meanwhile
    npz = json_path.with_suffix(".npz")
    result, arrays = pool_model_nvt_run(result, read_arrays(npz), run, run_arrays, seed)
    result = compare_result(result, reference, arrays, read_arrays(reference_json.with_suffix(".npz")))
    write_arrays(npz, arrays)
    write_record(json_path, result)
    return [json_path]
