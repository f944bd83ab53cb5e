"""Reference MD of a validation target, run once and cached per System + settings.

A reference is LangevinMiddleIntegrator MD at the target's reference timestep: minimisation
and equilibration to a shared start state, an NVT run (kinetic temperatures overall and per
element; for periodic Systems the RDF of every element pair; with a protein backbone φ/ψ
and basin populations; with water the water-oxygen self-diffusion) and, for periodic
Systems with a pressure, an NpT run (density). It is stored as ``reference-<name>.json``
(summary) + ``.npz`` (start state and series) in a cache folder and reused whenever a later
validation asks for the same settings (:func:`reference_settings`), whatever its model.

Units: nm, ps, K, kJ/mol, g/cm^3, bar, nm^2/ps.
"""

from __future__ import annotations

import copy
import datetime
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import numpy as np

from openmm_flashmd.validation import compare
from openmm_flashmd.validation.records import read_arrays, write_arrays, write_record
from openmm_flashmd.validation.sampling import State, advance
from openmm_flashmd.validation.target import (COLLISION_RATE, PRESSURE_BAR, REFERENCE_BAROSTAT_FREQUENCY, SEED,
                                              Target, ValidationError)

#: Bump when the reference protocol changes, so old caches are not reused.
REFERENCE_VERSION = 2
#: Lengths that define a reference (a cache with other values is not reused).
REFERENCE_KEYS = ("equil_ps", "settle_ps", "ref_nvt_ps", "npt_settle_ps", "ref_npt_ps", "sample_ps", "blocks")


def default_cache_dir() -> Path:
    """Where ``openmm-flashmd validate`` caches reference MD: ``$OPENMM_FLASHMD_CACHE`` or
    ``$XDG_CACHE_HOME/openmm-flashmd/validation`` (default ``~/.cache/...``)."""
    if os.environ.get("OPENMM_FLASHMD_CACHE"):
        return Path(os.environ["OPENMM_FLASHMD_CACHE"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "openmm-flashmd" / "validation"


def reference_settings(target: Target, lengths: Dict[str, float]) -> Dict[str, Any]:
    """Everything a reference depends on; equal settings reuse a cached reference."""
    return {"version": REFERENCE_VERSION, "system": target.name, "temperature_K": target.temperature,
            "collision_rate_per_ps": COLLISION_RATE, "timestep_ps": target.timestep, "seed": SEED,
            "pressure_bar": target.pressure if target.pressure is not None else PRESSURE_BAR,
            "barostat_frequency": REFERENCE_BAROSTAT_FREQUENCY,
            "lengths": {k: lengths[k] for k in REFERENCE_KEYS if k in lengths}}


def settings_hash(settings: Dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def run_reference(target: Target, lengths: Dict[str, float]) -> Tuple[Dict[str, Any], Dict[str, np.ndarray]]:
    """Reference MD of ``target``: start state, NVT and (periodic, with a pressure) NpT.
    Returns the summary and the arrays (start state, temperature series, RDFs, φ/ψ, densities)."""
    import openmm
    from openmm import unit

    dt = target.timestep
    interval = max(1, int(round(lengths["sample_ps"] / dt)))
    blocks = int(lengths["blocks"])
    result: Dict[str, Any] = {"benchmark": "validation-reference", "system": target.name,
                              "settings": reference_settings(target, lengths), "sample_interval_ps": interval * dt}
    arrays: Dict[str, np.ndarray] = {}
    progress = target.progress

    system = copy.deepcopy(target.system)
    integrator = target.langevin()
    context = target.start_context(system, integrator)
    openmm.LocalEnergyMinimizer.minimize(context, 10.0, 500)
    context.setVelocitiesToTemperature(target.temperature * unit.kelvin, SEED)
    advance(context, integrator, dt, lengths["equil_ps"], 1000, "reference equilibration", progress=progress)
    start = State.from_context(context)
    arrays.update(start_positions=start.positions, start_velocities=start.velocities, start_box=start.box)

    # NVT
    nvt, nvt_arrays, extras = reference_nvt(target, context, integrator, lengths, lengths["ref_nvt_ps"])
    result["cost"] = {"reference_s_per_ps": extras["wall_s"] / max(nvt["length_ps"], 1e-12),
                      "timed_ps": nvt["length_ps"]}
    result["nvt"] = nvt
    arrays.update(nvt_arrays)
    if "rdf_r_max_nm" in extras:
        result["rdf_r_max_nm"] = extras["rdf_r_max_nm"]
    if extras.get("diffusion") is not None:
        result["diffusion_water_O_nm2_per_ps"] = extras["diffusion"]
    if "phi" in arrays:
        phi, psi = arrays["phi"], arrays["psi"]
        result["basins"] = compare.basins(phi, psi, blocks)
        half = len(phi) // 2
        if half > 0:
            result["js_between_halves"] = compare.ramachandran_js(phi[:half], psi[:half], phi[half:], psi[half:])
    del context, integrator

    if target.pressure is not None and lengths.get("ref_npt_ps", 0) > 0:
        result["npt"], rho = reference_npt(target, start, lengths, lengths["ref_npt_ps"])
        arrays["npt_density"] = rho.astype(np.float32)
    return result, arrays


def reference_nvt(target: Target, context, integrator, lengths: Dict[str, float], length_ps: float
                  ) -> Tuple[Dict[str, Any], Dict[str, np.ndarray], Dict[str, Any]]:
    """Reference NVT MD on ``context``: ``settle_ps`` discarded, then ``length_ps`` measured.
    Returns the summary (``length_ps``, temperatures and, with several molecules, their
    translational and rotational temperatures, K), the arrays (``nvt_time``, ``nvt_T_<key>``,
    periodic: ``rdf_r`` and ``rdf_<pair>``; with a backbone: ``phi``, ``psi`` in degrees) and extras
    (``wall_s``; periodic: ``rdf_r_max_nm``, ``rdf_frames``, ``diffusion`` of water oxygens, nm^2/ps)."""
    dt = target.timestep
    blocks = int(lengths["blocks"])
    advance(context, integrator, dt, lengths["settle_ps"], 1000, "reference NVT settle", progress=target.progress)
    rec = target.recorder(positions=True, molecules=True)
    run = advance(context, integrator, dt, length_ps, max(1, int(round(lengths["sample_ps"] / dt))), "reference NVT",
                  rec, t0=lengths["settle_ps"], progress=target.progress)
    temps = rec.temperatures()
    nvt = {"length_ps": run["done_ps"], "temperature_K": compare.temperature_summary(temps, blocks, target.temperature)}
    motion = rec.molecule_temperatures()
    if motion:
        nvt["molecule_temperature_K"] = compare.temperature_summary(motion, blocks, target.temperature)
    arrays = {"nvt_time": np.asarray(rec.time, dtype=np.float32)}
    for key, values in temps.items():
        arrays[f"nvt_T_{key}"] = values.astype(np.float32)
    extras: Dict[str, Any] = {"wall_s": run["wall_s"]}
    traj = compare.trajectory(target.topology, rec.positions, rec.boxes if target.periodic else None)
    if target.periodic:
        box = State.from_context(context).box  # NVT: the start's
        extras["rdf_r_max_nm"] = r_max = 0.49 * float(np.min(np.linalg.norm(box, axis=1)))
        extras["rdf_frames"] = traj.n_frames
        for pair, (r, g) in compare.rdfs(traj, target.element_pairs(), r_max).items():
            arrays["rdf_r"] = r
            arrays[f"rdf_{pair}"] = g
        extras["diffusion"] = compare.water_oxygen_diffusion(target.topology, rec.time, rec.positions, rec.boxes,
                                                             run["done_ps"])
    if target.has_backbone:
        phi, psi = compare.backbone_dihedrals(traj)
        arrays["phi"], arrays["psi"] = phi.astype(np.float32), psi.astype(np.float32)
    return nvt, arrays, extras


def reference_npt(target: Target, start: State, lengths: Dict[str, float], length_ps: float,
                  seed: int = SEED) -> Tuple[Dict[str, Any], np.ndarray]:
    """Reference NpT MD from ``start``: ``npt_settle_ps`` discarded, then ``length_ps`` measured,
    thermostat and barostat random numbers from ``seed``. Returns the summary (density mean ± block
    SE, g/cm^3) and the density series."""
    dt = target.timestep
    system = target.barostat_system(seed=seed)
    integrator = target.langevin(seed=seed)
    context = target.context(system, integrator)
    start.apply(context, target.periodic)
    advance(context, integrator, dt, lengths["npt_settle_ps"], 1000, "reference NpT settle", progress=target.progress)
    rec = target.recorder(volume=True)
    run = advance(context, integrator, dt, length_ps, max(1, int(round(lengths["sample_ps"] / dt))), "reference NpT",
                  rec, progress=target.progress)
    rho = compare.density(rec.volume, float(target.masses.sum()))
    summary = {"length_ps": run["done_ps"], "density_g_cm3": compare.mean_sem(rho, int(lengths["blocks"])),
               "barostat_interval_ps": REFERENCE_BAROSTAT_FREQUENCY * dt}
    if run["failed_at_ps"] is not None:
        summary.update(failed_at_ps=run["failed_at_ps"], error=run["error"])
    return summary, rho


def find_cached_reference(name: str, cache_dir: Optional[Path] = None) -> Optional[Path]:
    """The cached reference (JSON) of the System named ``name`` (:func:`~openmm_flashmd.validation.
    target.system_identity`) with the longest reference NVT run (its runs pooled, where
    :mod:`~openmm_flashmd.validation.pooling` added some), or None."""
    best, best_length = None, -1.0
    for path in sorted(Path(cache_dir or default_cache_dir()).glob(f"reference-{name}*.json")):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if record.get("system") != name:
            continue
        nvt = record.get("nvt") or {}
        length = float(nvt.get("pooled_length_ps") or nvt.get("length_ps") or 0.0)
        if length > best_length:
            best, best_length = path, length
    return best


def reference_paths(cache_dir: Path, target: Target, lengths: Dict[str, float], by_settings: bool = False
                    ) -> Tuple[Path, Path]:
    """``reference-<target name>[-<settings hash>].json`` and ``.npz`` in ``cache_dir``."""
    stem = f"reference-{target.name}"
    if by_settings:
        stem += "-" + settings_hash(reference_settings(target, lengths))
    return Path(cache_dir) / f"{stem}.json", Path(cache_dir) / f"{stem}.npz"


def cached_reference(target: Target, lengths: Dict[str, float], cache_dir: Path, by_settings: bool = False
                     ) -> Optional[Tuple[Dict[str, Any], Dict[str, np.ndarray]]]:
    """The cached reference of ``target`` with exactly these settings, or None."""
    json_path, npz_path = reference_paths(cache_dir, target, lengths, by_settings)
    if not (json_path.exists() and npz_path.exists()):
        return None
    cached = json.loads(json_path.read_text())
    if cached.get("settings") != reference_settings(target, lengths):
        return None
    return cached, read_arrays(npz_path)


def load_or_run_reference(target: Target, lengths: Dict[str, float], cache_dir: Path, overwrite: bool,
                          stack: Optional[Dict[str, Any]] = None, by_settings: bool = False
                          ) -> Tuple[Dict[str, Any], Dict[str, np.ndarray], bool]:
    """The cached reference of ``target`` if its settings match, else a new one written to
    ``cache_dir`` (a cache with other settings is replaced only with ``overwrite``; with
    ``by_settings`` file names carry the settings hash, so none is ever replaced).
    Returns (summary, arrays, ran_here)."""
    found = cached_reference(target, lengths, cache_dir, by_settings)
    if found is not None:
        return found[0], found[1], False
    json_path, npz_path = reference_paths(cache_dir, target, lengths, by_settings)
    if json_path.exists() and not overwrite:
        other = json.loads(json_path.read_text()).get("settings")
        raise ValidationError(f"{json_path} was made with other settings ({other}); pass overwrite to replace it")
    summary, arrays = run_reference(target, lengths)
    summary["settings_hash"] = settings_hash(summary["settings"])
    summary["created"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    if stack is not None:
        summary["stack"] = stack
    write_arrays(npz_path, arrays)
    write_record(json_path, summary)
    return summary, arrays, True
