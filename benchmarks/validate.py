"""Validate trained stride models against reference MD with the same classical potential.

    python benchmarks/validate.py run MODEL [--system NAME] [--out DIR] [--lengths quick|full]
                                            [--overwrite] [--work-dir DIR] [--set KEY=VALUE ...]
    python benchmarks/validate.py reference SYSTEM [--out DIR] [--lengths quick|full]
    python benchmarks/validate.py summarize [--out DIR]
    python benchmarks/validate.py friction MODEL [--rates 1 10 30 100] [--lengths quick|full]

``run`` validates one stride model (a bundled name such as ``water-16fs`` or a file) on a
built-in system (default: the model name without its ``-<N>fs`` suffix) and writes
``DIR/<model>.json`` (+ a small ``.npz`` of series and PNG plots; default DIR
``benchmarks/results/validation``). Everything runs on the OpenMM CPU platform:

1. NVT, Langevin at the system's temperature (300 K), friction 1/ps: FlashMD with the
   energy filter ("O F E O") and without ("O F O"); kinetic temperature overall and per
   element (mean ± block standard error), against the target and against reference MD;
   energy-filter statistics.
2. Water: O-O and O-H RDFs of the filtered FlashMD NVT run against reference NVT
   (integrated absolute difference, %); NpT with a MonteCarloBarostat at 1 bar (FlashMD
   "O F E O" and reference, moves attempted equally often in simulated time): density
   (g/cm^3) and its relative difference (%).
3. Alanine dipeptide: Ramachandran Jensen-Shannon divergence (nats, 36x36 bins) of the
   filtered FlashMD NVT run against reference NVT, basin populations with block-bootstrap
   errors.
4. NVE without filter ("F") from the equilibrated 300 K state: temperature drift and
   total-energy drift (kJ/mol/ps/atom).
5. Stability (the largest bundled stride of the system, or ``--stability``): the filtered
   NVT run continued to ``stability_ps``; "stable" or the time of failure.
6. Cost: wall seconds per simulated ps of reference MD (LangevinMiddleIntegrator at the
   system's reference timestep) and of FlashMD "O F E O", timed in this process.

Every FlashMD run has the stride monitor on (``FlashMDIntegrator(fallback=True)``, the
product's default; ``--no-fallback`` turns it off): a rejected stride is integrated with MD
instead, and each run records its share of such strides, which the cost of 6. includes. A
run still "fails" when its temperature exceeds ``EXPLOSION_FACTOR`` x the target.

Reference MD (start state, NVT, NpT) is run once per system and cached as
``DIR/reference-<system>.json`` + ``.npz``; later models reuse it when its settings match
(a cache with other settings is replaced only with ``--overwrite``). Trajectories go to
``--work-dir`` (default /tmp/flashmd-validation), never into the repository.

``friction`` runs the filtered NVT of 1. at several Langevin frictions and writes
``benchmarks/results/friction-<model>.json``: per-element temperatures against reference
MD, filter clamps, O-O RDF and, for water, the O self-diffusion coefficient (MSD slope over
1-5 ps) of FlashMD and of reference MD at the same friction. A strong local thermostat
restores equipartition that a damping stride model breaks, at the price of dynamics; this
measures both sides.

``summarize`` merges every ``DIR/<model>.json`` into ``DIR/../validation.json`` (rendered
into the README by ``benchmarks/report.py``) and writes ``DIR/summary.md`` with the goals.

Units: nm, ps, K, kJ/mol, g/cm^3, Da.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import hashlib
import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import fmt_or_dash as _fmt, stack_info, write_json  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "validation"
DEFAULT_WORK = Path("/tmp/flashmd-validation")

#: Bump when the reference protocol changes, so old caches are not reused.
REFERENCE_VERSION = 2
COLLISION_RATE = 1.0  # 1/ps
PRESSURE_BAR = 1.0
SEED = 0
#: Reference MD barostat: a move every 25 steps (OpenMM's default); FlashMD attempts moves as
#: often in simulated time (every max(1, round(25 dt_ref / stride)) strides).
REFERENCE_BAROSTAT_FREQUENCY = 25

#: Lengths in ps (``blocks``: number of blocks for the standard errors).
#:  equil_ps: minimisation, then reference Langevin MD to the shared start state;
#:  settle_ps / npt_settle_ps: discarded start of every NVT / NpT run;
#:  nvt_ps, ref_nvt_ps, npt_ps, ref_npt_ps, nve_ps, stability_ps: measured lengths
#:  (stability_ps counts from the start of the filtered NVT run);
#:  nve_start_ps / nve_end_ps: windows for the NVE start and end temperatures;
#:  sample_ps: sampling interval; ref_cost_ps: reference MD timed when the reference is cached.
_WATER_FULL = dict(equil_ps=2.0, settle_ps=2.0, nvt_ps=50.0, ref_nvt_ps=100.0, npt_settle_ps=10.0, npt_ps=50.0,
                   ref_npt_ps=100.0, nve_ps=50.0, nve_start_ps=1.0, nve_end_ps=5.0, stability_ps=1000.0,
                   sample_ps=0.1, blocks=10, ref_cost_ps=2.0)
_WATER_QUICK = dict(equil_ps=0.1, settle_ps=0.05, nvt_ps=0.4, ref_nvt_ps=0.4, npt_settle_ps=0.05, npt_ps=0.4,
                    ref_npt_ps=0.4, nve_ps=0.4, nve_start_ps=0.1, nve_end_ps=0.1, stability_ps=0.8,
                    sample_ps=0.02, blocks=4, ref_cost_ps=0.1)
_ALANINE_FULL = dict(equil_ps=2.0, settle_ps=2.0, nvt_ps=250.0, ref_nvt_ps=500.0, nve_ps=50.0, nve_start_ps=1.0,
                     nve_end_ps=5.0, stability_ps=1000.0, sample_ps=0.1, blocks=10, ref_cost_ps=5.0)
_ALANINE_QUICK = dict(equil_ps=0.1, settle_ps=0.05, nvt_ps=1.0, ref_nvt_ps=1.0, nve_ps=0.4, nve_start_ps=0.1,
                      nve_end_ps=0.1, stability_ps=1.2, sample_ps=0.02, blocks=4, ref_cost_ps=0.1)
LENGTHS: Dict[str, Dict[str, Dict[str, float]]] = {
    "full": {"water": _WATER_FULL, "water-rigid": _WATER_FULL, "alanine-dipeptide-implicit": _ALANINE_FULL,
             "alanine-dipeptide-implicit-hbonds": _ALANINE_FULL},
    "quick": {"water": _WATER_QUICK, "water-rigid": _WATER_QUICK, "alanine-dipeptide-implicit": _ALANINE_QUICK,
              "alanine-dipeptide-implicit-hbonds": _ALANINE_QUICK},
}
#: Lengths that define the cached reference (a cache with other values is not reused).
REFERENCE_KEYS = ("equil_ps", "settle_ps", "ref_nvt_ps", "npt_settle_ps", "ref_npt_ps", "sample_ps", "blocks")

def _water_goals(system: str, label: str, temperature_text: str, stride_fs: int = 16) -> List[Dict[str, Any]]:
    """The temperature, O-O RDF and density goals of a water box at ``stride_fs``."""
    return [dict(key="water_T", system=system, stride_fs=stride_fs, threshold=1.0, text=temperature_text),
            dict(key="water_rdf", system=system, stride_fs=stride_fs, threshold=2.0,
                 text=f"{label} {stride_fs} fs: O–O RDF integrated difference ≤ 2 %"),
            dict(key="water_density", system=system, stride_fs=stride_fs, threshold=1.0,
                 text=f"{label} {stride_fs} fs: NpT density within 1 % of reference MD")]


def _rigid_water_temperature_text(stride_fs: int) -> str:
    return (f"rigid water {stride_fs} fs, NVT with filter: T within 1 K of 300 K overall, and every element within "
            "1 K of reference MD (with constraints, per-element kinetic T is not 300 K)")


#: Goals of the validation (see ``summarize``).
GOALS = (
    _water_goals("water", "water", "water 16 fs, NVT with filter: T within 1 K of 300 K, overall and for every element")
    + _water_goals("water-rigid", "rigid water", _rigid_water_temperature_text(16))
    + _water_goals("water-rigid", "rigid water", _rigid_water_temperature_text(8), stride_fs=8)
    + [dict(key="alanine_js", system="alanine-dipeptide-implicit-hbonds", stride_fs=8, threshold=0.05,
            text="alanine dipeptide (HBonds) 8 fs: Ramachandran JS divergence ≤ 0.05"),
       dict(key="nve", system=None, stride_fs=None, threshold=5.0,
            text="NVE without filter: T(end) within 5 K of T(start) after 50 ps")]
)

PROGRESS = True
#: A run whose kinetic temperature exceeds this multiple of the target has exploded: it is
#: stopped and reported as failed at that time (T fluctuations of these systems at 300 K are
#: tens of K, so twice the target is far outside any physical fluctuation).
EXPLOSION_FACTOR = 2.0


# --------------------------------------------------------------------------- helpers
def _clean(value: Any) -> Any:
    """JSON-ready copy: numpy scalars/arrays to Python, NaN/inf to None."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, np.ndarray):
        return _clean(value.tolist())
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(float(value)) else None
    return value


def _mean_sem(values, blocks: int) -> Dict[str, float]:
    from openmm_flashmd.analysis.statistics import block_average

    mean, sem = block_average(values, blocks)
    return {"mean": mean, "sem": sem}


def _settings_hash(settings: Dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def system_from_model_name(stem: str) -> Optional[str]:
    """``water-16fs`` -> ``water``; None when the name has no ``-<N>fs`` suffix."""
    from openmm_flashmd.model.bundled import split_model_name

    parts = split_model_name(stem)
    return parts[0] if parts else None


def bundled_strides(system: str) -> List[int]:
    """Strides (fs) of the bundled models named ``<system>-<N>fs``."""
    from openmm_flashmd.model.bundled import bundled_models, split_model_name

    strides = []
    for name in bundled_models():
        parts = split_model_name(name)
        if parts and parts[0] == system:
            strides.append(parts[1])
    return sorted(strides)


def _platform(threads: Optional[int]):
    from openmm_flashmd.systems.loading import make_platform

    platform = make_platform("CPU")
    return platform, ({"Threads": str(threads)} if threads else {})


class State:
    """Positions (nm), velocities (nm/ps) and box (nm, rows; zeros if not periodic) as arrays."""

    def __init__(self, positions: np.ndarray, velocities: np.ndarray, box: np.ndarray):
        self.positions, self.velocities, self.box = positions, velocities, box

    @classmethod
    def from_context(cls, context) -> "State":
        state = context.getState(getPositions=True, getVelocities=True)
        box = np.asarray(state.getPeriodicBoxVectors(asNumpy=True)._value, dtype=float)
        return cls(np.asarray(state.getPositions(asNumpy=True)._value, dtype=float),
                   np.asarray(state.getVelocities(asNumpy=True)._value, dtype=float), box)

    def apply(self, context, periodic: bool) -> None:
        if periodic:
            context.setPeriodicBoxVectors(*self.box)
        context.setPositions(self.positions)
        context.setVelocities(self.velocities)


class Recorder:
    """Samples a Context: time (ps), kinetic temperatures (K), optionally positions (nm),
    box (nm), volume (nm^3), potential and kinetic energy (kJ/mol), max speed (nm/ps)."""

    def __init__(self, masses: np.ndarray, elements: List[str], dof: float, positions: bool = False,
                 energy: bool = False, energy_groups=None, volume: bool = False,
                 explosion_K: Optional[float] = None):
        self.masses, self.elements, self.dof = masses, elements, dof
        self.explosion_K = explosion_K
        self.want_positions, self.want_energy, self.want_volume = positions, energy, volume
        self.energy_groups = energy_groups
        self.time: List[float] = []
        self.velocities_T: List[float] = []
        self.by_element: Dict[str, List[float]] = {e: [] for e in sorted(set(elements))}
        self.positions: List[np.ndarray] = []
        self.boxes: List[np.ndarray] = []
        self.volume: List[float] = []
        self.potential: List[float] = []
        self.kinetic: List[float] = []
        self.max_speed = 0.0

    def __call__(self, context, t: float) -> None:
        from openmm_flashmd.analysis.thermo import kinetic_temperature, temperature_by_element

        kwargs: Dict[str, Any] = dict(getVelocities=True, getPositions=self.want_positions, getEnergy=self.want_energy)
        if self.want_energy and self.energy_groups is not None:
            kwargs["groups"] = set(self.energy_groups)
        state = context.getState(**kwargs)
        v = np.asarray(state.getVelocities(asNumpy=True)._value, dtype=float)
        self.time.append(t)
        self.velocities_T.append(float(kinetic_temperature(v, self.masses, self.dof)))
        for element, values in temperature_by_element(v, self.masses, self.elements).items():
            self.by_element[element].append(float(values))
        self.max_speed = max(self.max_speed, float(np.sqrt((v * v).sum(1)).max()))
        if self.want_positions:
            self.positions.append(np.asarray(state.getPositions(asNumpy=True)._value, dtype=np.float32))
            self.boxes.append(np.asarray(state.getPeriodicBoxVectors(asNumpy=True)._value, dtype=np.float32))
        if self.want_volume:
            self.volume.append(float(state.getPeriodicBoxVolume()._value))
        if self.want_energy:
            self.potential.append(float(state.getPotentialEnergy()._value))
            self.kinetic.append(float(state.getKineticEnergy()._value))

    def exploded(self) -> Optional[str]:
        """Why the last sample counts as an explosion (kinetic T above ``explosion_K``), else None."""
        if self.explosion_K is None or not self.velocities_T:
            return None
        last = self.velocities_T[-1]
        if math.isfinite(last) and last <= self.explosion_K:
            return None
        return f"exploded: kinetic temperature {last:.0f} K > {self.explosion_K:.0f} K"

    def temperatures(self) -> Dict[str, np.ndarray]:
        out = {"all": np.asarray(self.velocities_T)}
        out.update({e: np.asarray(v) for e, v in self.by_element.items()})
        return out


def advance(context, integrator, dt: float, duration: float, interval: int, desc: str,
            recorder: Optional[Recorder] = None, t0: float = 0.0) -> Dict[str, Any]:
    """Step ``duration`` ps (rounded to whole steps of ``dt`` ps) in chunks of ``interval``
    steps, sampling with ``recorder`` after each chunk; ``t0`` (ps) is the simulated time
    since the Context was made, so sample times count from there.

    Returns wall seconds spent in ``step`` (``wall_s``), simulated ps done (``done_ps``),
    and, if a FlashMD stride failed, ``failed_at_ps`` (the end time of the failed stride
    since the Context was made: ``FlashMDError`` names the stride by its running count) and
    ``error``. A run whose ``recorder`` reports an explosion stops there and counts as failed.
    """
    import openmm
    from tqdm.auto import tqdm

    from openmm_flashmd import FlashMDError

    total = max(1, int(round(duration / dt))) if duration > 0 else 0
    done, wall = 0, 0.0
    result: Dict[str, Any] = {"failed_at_ps": None, "error": None}
    with tqdm(total=total, desc=desc, unit="step", disable=not PROGRESS, leave=False, mininterval=2.0) as bar:
        while done < total:
            chunk = min(interval, total - done)
            start = time.perf_counter()
            try:
                integrator.step(chunk)
            except (FlashMDError, openmm.OpenMMException) as exc:
                wall += time.perf_counter() - start
                stride = getattr(exc, "stride", 0)
                failed_at = stride * dt if stride else t0 + (done + chunk) * dt
                result.update(failed_at_ps=failed_at, error=str(exc).splitlines()[0])
                break
            wall += time.perf_counter() - start
            done += chunk
            bar.update(chunk)
            if recorder is not None:
                recorder(context, t0 + done * dt)
                reason = recorder.exploded()
                if reason:
                    result.update(failed_at_ps=t0 + done * dt, error=reason)
                    break
    result.update(wall_s=wall, done_ps=done * dt)
    return result


# --------------------------------------------------------------------------- setup
class Setup:
    """A built-in system with what the measurements need."""

    def __init__(self, name: str, threads: Optional[int], fallback: bool = True):
        from openmm_flashmd.analysis.thermo import degrees_of_freedom, system_masses
        from openmm_flashmd.systems import get_system

        self.name = name
        self.fallback = fallback  # FlashMD runs with the stride monitor (the product's default)
        self.built = get_system(name)
        self.system = self.built.system
        self.topology = self.built.topology
        self.temperature = float(self.built.temperature)
        self.timestep = float(self.built.reference_timestep)
        self.periodic = self.system.usesPeriodicBoundaryConditions()
        self.n_atoms = self.system.getNumParticles()
        self.masses = system_masses(self.system)
        self.elements = [atom.element.symbol for atom in self.topology.atoms()]
        self.dof = degrees_of_freedom(self.system)
        self.platform, self.properties = _platform(threads)

    def context(self, system, integrator):
        import openmm

        return openmm.Context(system, integrator, self.platform, self.properties)

    def recorder(self, **kwargs) -> Recorder:
        """A :class:`Recorder` that calls a run exploded above ``EXPLOSION_FACTOR`` x the temperature."""
        return Recorder(self.masses, self.elements, self.dof, explosion_K=EXPLOSION_FACTOR * self.temperature, **kwargs)

    def barostat_system(self, frequency: int = REFERENCE_BAROSTAT_FREQUENCY):
        """The System rebuilt for a barostat (cutoff at most 0.45 x the box edge, see
        :func:`openmm_flashmd.systems.get_system_for_barostat`) with a MonteCarloBarostat
        attempting a move every ``frequency`` steps."""
        import openmm
        from openmm import unit

        from openmm_flashmd.systems import get_system_for_barostat

        system = get_system_for_barostat(self.name).system
        barostat = openmm.MonteCarloBarostat(PRESSURE_BAR * unit.bar, self.temperature * unit.kelvin, int(frequency))
        barostat.setRandomNumberSeed(SEED + 7)
        system.addForce(barostat)
        return system

    def langevin(self, collision_rate: float = COLLISION_RATE):
        """Reference MD: LangevinMiddleIntegrator at the reference timestep, friction in 1/ps."""
        import openmm
        from openmm import unit

        integrator = openmm.LangevinMiddleIntegrator(self.temperature * unit.kelvin, collision_rate / unit.picosecond,
                                                     self.timestep * unit.picosecond)
        integrator.setRandomNumberSeed(SEED + 1)
        return integrator

    def flashmd(self, system, model, splitting: str, collision_rate: float = COLLISION_RATE):
        """A FlashMDIntegrator for ``system`` (Langevin friction in 1/ps when the splitting has "O")."""
        from openmm import unit

        from openmm_flashmd import FlashMDIntegrator

        thermostat = splitting != "F" and "O" in splitting
        return FlashMDIntegrator(system, model, temperature=self.temperature * unit.kelvin if thermostat else None,
                                 collision_rate=collision_rate / unit.picosecond, splitting=splitting,
                                 random_seed=SEED + 2, topology=self.topology, fallback=self.fallback)


def temperature_summary(series: Dict[str, np.ndarray], blocks: int, target: float,
                        reference: Optional[Dict[str, Dict[str, float]]] = None) -> Dict[str, Dict[str, float]]:
    """Mean ± block SE (K) per key, deviation from ``target`` and from ``reference`` means."""
    out = {}
    for key, values in series.items():
        entry = _mean_sem(values, blocks)
        entry["dev_target"] = entry["mean"] - target
        if reference and key in reference and reference[key].get("mean") is not None:
            entry["dev_reference"] = entry["mean"] - reference[key]["mean"]
            ref_sem = reference[key].get("sem")
            entry["dev_reference_sem"] = (math.hypot(entry["sem"], ref_sem)
                                          if ref_sem is not None and math.isfinite(entry["sem"]) else math.nan)
        out[key] = entry
    return out


def density(volumes_nm3: np.ndarray, total_mass_da: float) -> np.ndarray:
    """g/cm^3 from box volumes (nm^3) and the total mass (Da)."""
    from openmm_flashmd.analysis.thermo import density as mass_density

    return mass_density(total_mass_da, volumes_nm3)


def _trajectory(setup: Setup, positions: List[np.ndarray], boxes: List[np.ndarray]):
    import mdtraj

    top = mdtraj.Topology.from_openmm(setup.topology)
    xyz = np.asarray(positions, dtype=np.float32)
    traj = mdtraj.Trajectory(xyz, top)
    if setup.periodic:
        traj.unitcell_vectors = np.asarray(boxes, dtype=np.float32)
    return traj


def rdfs(traj, r_max: float) -> Dict[str, Tuple[np.ndarray, np.ndarray]]:
    from openmm_flashmd.analysis.structure import radial_distribution

    return {"O-O": radial_distribution(traj, "O", "O", r_max=r_max),
            "O-H": radial_distribution(traj, "O", "H", r_max=r_max)}


def rdf_comparison(traj, reference: Dict[str, Any],
                   ref_arrays: Dict[str, np.ndarray]) -> Tuple[Dict[str, Dict[str, float]], Dict[str, Dict]]:
    """O-O and O-H RDFs of ``traj`` against the cached reference: ``{pair: {difference_percent,
    frames}}`` and the curves ``{pair: {"reference MD": g_ref, "FlashMD": g}}`` on ``ref_arrays["rdf_r"]``."""
    from openmm_flashmd.analysis.structure import rdf_difference

    result, curves = {}, {}
    for pair, (_, g) in rdfs(traj, float(reference["rdf_r_max_nm"])).items():
        g_ref = ref_arrays[f"rdf_{pair}"]
        result[pair] = {"difference_percent": 100.0 * rdf_difference(ref_arrays["rdf_r"], g, g_ref),
                        "frames": traj.n_frames}
        curves[pair] = {"reference MD": g_ref, "FlashMD": g}
    return result, curves


def _save_work(work_dir: Path, name: str, **arrays) -> None:
    work_dir.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(work_dir / f"{name}.npz", **arrays)


# --------------------------------------------------------------------------- reference MD
def reference_settings(setup: Setup, lengths: Dict[str, float]) -> Dict[str, Any]:
    return {"version": REFERENCE_VERSION, "system": setup.name, "temperature_K": setup.temperature,
            "collision_rate_per_ps": COLLISION_RATE, "timestep_ps": setup.timestep, "seed": SEED,
            "pressure_bar": PRESSURE_BAR, "barostat_frequency": REFERENCE_BAROSTAT_FREQUENCY,
            "lengths": {k: lengths[k] for k in REFERENCE_KEYS if k in lengths}}


def run_reference(setup: Setup, lengths: Dict[str, float],
                  work_dir: Path) -> Tuple[Dict[str, Any], Dict[str, np.ndarray]]:
    """Reference MD (LangevinMiddle at the reference timestep): start state, NVT and (periodic) NpT."""
    import openmm
    from openmm import unit

    dt = setup.timestep
    interval = max(1, int(round(lengths["sample_ps"] / dt)))
    blocks = int(lengths["blocks"])
    result: Dict[str, Any] = {"benchmark": "validation-reference", "system": setup.name,
                              "settings": reference_settings(setup, lengths), "sample_interval_ps": interval * dt}
    arrays: Dict[str, np.ndarray] = {}

    system = copy.deepcopy(setup.system)
    integrator = setup.langevin()
    context = setup.context(system, integrator)
    context.setPositions(setup.built.positions)
    openmm.LocalEnergyMinimizer.minimize(context, 10.0, 500)
    context.setVelocitiesToTemperature(setup.temperature * unit.kelvin, SEED)
    advance(context, integrator, dt, lengths["equil_ps"], 1000, "reference equilibration")
    start = State.from_context(context)
    arrays.update(start_positions=start.positions, start_velocities=start.velocities, start_box=start.box)

    # NVT
    advance(context, integrator, dt, lengths["settle_ps"], 1000, "reference NVT settle")
    rec = setup.recorder(positions=True)
    run = advance(context, integrator, dt, lengths["ref_nvt_ps"], interval, "reference NVT", rec,
                  t0=lengths["settle_ps"])
    result["cost"] = {"reference_s_per_ps": run["wall_s"] / max(run["done_ps"], 1e-12),
                      "timed_ps": run["done_ps"]}
    temps = rec.temperatures()
    result["nvt"] = {"length_ps": run["done_ps"],
                     "temperature_K": temperature_summary(temps, blocks, setup.temperature)}
    arrays["nvt_time"] = np.asarray(rec.time, dtype=np.float32)
    for key, values in temps.items():
        arrays[f"nvt_T_{key}"] = values.astype(np.float32)
    traj = _trajectory(setup, rec.positions, rec.boxes)
    _save_work(work_dir, f"reference-{setup.name}-nvt", positions=np.asarray(rec.positions),
               boxes=np.asarray(rec.boxes))
    if setup.periodic and "O" in setup.elements and "H" in setup.elements:
        r_max = 0.49 * float(np.min(np.linalg.norm(start.box, axis=1)))
        result["rdf_r_max_nm"] = r_max
        for pair, (r, g) in rdfs(traj, r_max).items():
            arrays["rdf_r"] = r
            arrays[f"rdf_{pair}"] = g
    if setup.name.startswith("alanine-dipeptide"):
        from openmm_flashmd.analysis.dihedrals import basin_populations, block_bootstrap, ramachandran
        from openmm_flashmd.analysis.dihedrals import jensen_shannon, ramachandran_histogram

        phi, psi = ramachandran(traj)
        arrays["phi"], arrays["psi"] = phi[:, 0].astype(np.float32), psi[:, 0].astype(np.float32)
        value, sem = block_bootstrap(basin_populations, phi[:, 0], psi[:, 0], n_blocks=max(2, 2 * blocks))
        result["basins"] = {k: {"value": value[k], "sem": sem[k]} for k in value}
        half = len(phi) // 2
        if half > 0:
            result["js_between_halves"] = jensen_shannon(ramachandran_histogram(phi[:half], psi[:half]),
                                                         ramachandran_histogram(phi[half:], psi[half:]))
    del context, integrator

    if setup.periodic and lengths.get("ref_npt_ps", 0) > 0:
        system = setup.barostat_system()
        integrator = setup.langevin()
        context = setup.context(system, integrator)
        start.apply(context, setup.periodic)
        advance(context, integrator, dt, lengths["npt_settle_ps"], 1000, "reference NpT settle")
        rec = setup.recorder(volume=True)
        run = advance(context, integrator, dt, lengths["ref_npt_ps"], interval, "reference NpT", rec)
        rho = density(rec.volume, float(setup.masses.sum()))
        arrays["npt_density"] = rho.astype(np.float32)
        result["npt"] = {"length_ps": run["done_ps"], "density_g_cm3": _mean_sem(rho, blocks),
                         "barostat_interval_ps": REFERENCE_BAROSTAT_FREQUENCY * dt}
        del context, integrator
    return result, arrays


def load_or_run_reference(setup: Setup, lengths: Dict[str, float], out: Path, work_dir: Path,
                          overwrite: bool) -> Tuple[Dict[str, Any], Dict[str, np.ndarray], bool]:
    """The cached reference of ``setup.name`` if its settings match, else a new one (written
    to ``out``; an existing cache with other settings is replaced only with ``overwrite``).
    Returns (summary, arrays, ran_here)."""
    json_path, npz_path = out / f"reference-{setup.name}.json", out / f"reference-{setup.name}.npz"
    settings = reference_settings(setup, lengths)
    if json_path.exists() and npz_path.exists():
        cached = json.loads(json_path.read_text())
        if cached.get("settings") == settings:
            print(f"reusing reference MD {json_path}")
            with np.load(npz_path) as data:
                return cached, {k: data[k] for k in data.files}, False
        if not overwrite:
            raise SystemExit(f"{json_path} was made with other settings ({cached.get('settings')}); "
                             "pass --overwrite to replace it")
    summary, arrays = run_reference(setup, lengths, work_dir)
    summary["settings_hash"] = _settings_hash(settings)
    summary["created"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    summary["stack"] = stack_info()
    write_json(json_path, _clean(summary), overwrite=True)
    np.savez_compressed(npz_path, **arrays)
    return summary, arrays, True


# --------------------------------------------------------------------------- FlashMD runs
def fallback_record(integrator) -> Optional[Dict[str, Any]]:
    """The stride monitor's statistics of a run (None without the monitor)."""
    if not integrator.fallback:
        return None
    return {**integrator.fallback_statistics, "substeps": integrator.fallback_substeps}


def flashmd_nvt(setup: Setup, model, splitting: str, start: State, lengths: Dict[str, float], stride: float,
                reference: Dict[str, Any], positions: bool, continue_to_ps: float = 0.0,
                collision_rate: float = COLLISION_RATE) -> Tuple[Dict, Dict, Recorder]:
    """NVT FlashMD run (friction ``collision_rate``, 1/ps): settle, measure ``nvt_ps``,
    optionally continue (stability)."""
    system = copy.deepcopy(setup.system)
    integrator = setup.flashmd(system, model, splitting, collision_rate)
    context = setup.context(system, integrator)
    start.apply(context, setup.periodic)
    interval = max(1, int(round(lengths["sample_ps"] / stride)))
    blocks = int(lengths["blocks"])
    label = f"FlashMD NVT {splitting}"
    out: Dict[str, Any] = {"splitting": splitting, "length_ps": lengths["nvt_ps"],
                           "sample_interval_ps": interval * stride}
    settle = advance(context, integrator, stride, lengths["settle_ps"], interval, f"{label} settle")
    rec = setup.recorder(positions=positions)
    series: Dict[str, np.ndarray] = {}
    if settle["failed_at_ps"] is not None:
        out.update(failed_at_ps=settle["failed_at_ps"], error=settle["error"], completed_ps=0.0)
        return out, series, rec
    integrator.reset_filter_statistics()
    integrator.reset_fallback_statistics()
    t_settle = settle["done_ps"]
    run = advance(context, integrator, stride, lengths["nvt_ps"], interval, label, rec, t0=t_settle)
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
        out["temperature_K"] = temperature_summary(temps, blocks, setup.temperature,
                                                   reference.get("nvt", {}).get("temperature_K"))
        out["partial"] = run["failed_at_ps"] is not None
    series["time"] = np.asarray(rec.time, dtype=np.float32)
    for key, values in temps.items():
        series[f"T_{key}"] = values.astype(np.float32)

    if continue_to_ps > 0:
        stab: Dict[str, Any] = {"length_ps": continue_to_ps, "splitting": splitting}
        t_now = t_settle + run["done_ps"]
        failed, error = out["failed_at_ps"], out.get("error")
        t_series = list(temps["all"])
        speed = rec.max_speed
        if failed is None and continue_to_ps > t_now:
            more = setup.recorder()
            integrator.reset_fallback_statistics()
            cont = advance(context, integrator, stride, continue_to_ps - t_now, interval, f"{label} stability", more,
                           t0=t_now)
            failed, error = cont["failed_at_ps"], cont["error"]
            t_series += more.velocities_T
            speed = max(speed, more.max_speed)
            series["stability_time"] = np.asarray(more.time, dtype=np.float32)
            series["stability_T_all"] = np.asarray(more.velocities_T, dtype=np.float32)
            stab["fallback"] = fallback_record(integrator)
        stab.update(stable=failed is None, failed_at_ps=failed, error=error,
                    T_min_K=float(np.min(t_series)) if t_series else math.nan,
                    T_max_K=float(np.max(t_series)) if t_series else math.nan, max_speed_nm_per_ps=speed)
        out["stability"] = stab
    return out, series, rec


def flashmd_npt(setup: Setup, model, start: State, lengths: Dict[str, float], stride: float,
                collision_rate: float = COLLISION_RATE) -> Tuple[Dict, np.ndarray]:
    frequency = max(1, int(round(REFERENCE_BAROSTAT_FREQUENCY * setup.timestep / stride)))
    system = setup.barostat_system(frequency)
    integrator = setup.flashmd(system, model, "O F E O", collision_rate)
    context = setup.context(system, integrator)
    start.apply(context, setup.periodic)
    interval = max(1, int(round(lengths["sample_ps"] / stride)))
    out: Dict[str, Any] = {"splitting": "O F E O", "length_ps": lengths["npt_ps"],
                           "barostat_interval_strides": frequency, "barostat_interval_ps": frequency * stride}
    settle = advance(context, integrator, stride, lengths["npt_settle_ps"], interval, "FlashMD NpT settle")
    rec = setup.recorder(volume=True)
    if settle["failed_at_ps"] is None:
        run = advance(context, integrator, stride, lengths["npt_ps"], interval, "FlashMD NpT", rec,
                      t0=settle["done_ps"])
        out.update(completed_ps=run["done_ps"], failed_at_ps=run["failed_at_ps"], error=run["error"],
                   fallback=fallback_record(integrator))
    else:
        out.update(completed_ps=0.0, failed_at_ps=settle["failed_at_ps"], error=settle["error"])
    rho = density(rec.volume, float(setup.masses.sum()))
    if len(rho):
        out["density_g_cm3"] = _mean_sem(rho, int(lengths["blocks"]))
    return out, rho


def flashmd_nve(setup: Setup, model, start: State, lengths: Dict[str, float], stride: float) -> Tuple[Dict, Dict]:
    system = copy.deepcopy(setup.system)
    integrator = setup.flashmd(system, model, "F")
    context = setup.context(system, integrator)
    start.apply(context, setup.periodic)
    interval = max(1, int(round(lengths["sample_ps"] / stride)))
    rec = setup.recorder(energy=True, energy_groups=integrator.energy_force_groups)
    rec(context, 0.0)
    run = advance(context, integrator, stride, lengths["nve_ps"], interval, "FlashMD NVE F", rec)
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
                   energy_drift_kjmol_per_ps_per_atom=float(np.polyfit(t, total, 1)[0] / setup.n_atoms),
                   total_energy_range_kjmol=float(total.max() - total.min()))
    series = {"time": t.astype(np.float32), "T_all": temp.astype(np.float32), "E_total": total.astype(np.float32)}
    return out, series


# --------------------------------------------------------------------------- plots
def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _running_mean(values: np.ndarray, window: int) -> np.ndarray:
    if window <= 1 or len(values) < window:
        return values
    kernel = np.ones(window) / window
    return np.convolve(values, kernel, mode="valid")


def plot_temperatures(path: Path, runs: Dict[str, Dict[str, np.ndarray]], target: float, window_ps: float) -> None:
    plt = _plt()
    keys = sorted({k[2:] for series in runs.values() for k in series if k.startswith("T_")},
                  key=lambda k: (k != "all", k))
    fig, axes = plt.subplots(1, len(keys), figsize=(3.2 * len(keys), 2.8), dpi=100, squeeze=False)
    for ax, key in zip(axes[0], keys):
        for label, series in runs.items():
            if f"T_{key}" not in series or len(series[f"T_{key}"]) == 0:
                continue
            t, values = series["time"], series[f"T_{key}"]
            dt = float(np.median(np.diff(t))) if len(t) > 1 else 1.0
            window = max(1, int(round(window_ps / dt)))
            smooth = _running_mean(values, window)
            ax.plot(t[len(t) - len(smooth):], smooth, lw=1.0, label=label)
        ax.axhline(target, color="k", lw=0.8, ls="--")
        ax.set_title(key if key != "all" else "all atoms", fontsize=9)
        ax.set_xlabel("time (ps)")
    axes[0][0].set_ylabel(f"T (K), running mean {window_ps:g} ps")
    axes[0][0].legend(frameon=False, fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_rdfs(path: Path, r: np.ndarray, curves: Dict[str, Dict[str, np.ndarray]]) -> None:
    plt = _plt()
    fig, axes = plt.subplots(1, len(curves), figsize=(3.4 * len(curves), 2.8), dpi=100, squeeze=False)
    for ax, (pair, by_label) in zip(axes[0], curves.items()):
        for label, g in by_label.items():
            ax.plot(r, g, lw=1.0, label=label)
        ax.set_title(pair, fontsize=9)
        ax.set_xlabel("r (nm)")
    axes[0][0].set_ylabel("g(r)")
    axes[0][0].legend(frameon=False, fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_ramachandran(path: Path, hists: Dict[str, np.ndarray]) -> None:
    plt = _plt()
    fig, axes = plt.subplots(1, len(hists), figsize=(3.2 * len(hists), 3.0), dpi=100, squeeze=False)
    positive = [h[h > 0] for h in hists.values() if np.any(h > 0)]
    vmin = float(np.log10(min(p.min() for p in positive))) if positive else None
    vmax = float(np.log10(max(p.max() for p in positive))) if positive else None
    for ax, (label, hist) in zip(axes[0], hists.items()):
        image = np.log10(np.where(hist > 0, hist, np.nan))
        ax.imshow(image.T, origin="lower", extent=(-180, 180, -180, 180), cmap="viridis", aspect="equal",
                  vmin=vmin, vmax=vmax)
        ax.set_title(label + " (log10 p)", fontsize=9)
        ax.set_xlabel("φ (°)")
        ax.set_xticks([-180, -90, 0, 90, 180])
        ax.set_yticks([-180, -90, 0, 90, 180])
    axes[0][0].set_ylabel("ψ (°)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_nve(path: Path, t: np.ndarray, temp: np.ndarray, target: float) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.5, 2.8), dpi=100)
    ax.plot(t, temp, lw=0.8)
    ax.axhline(target, color="k", lw=0.8, ls="--")
    ax.set_xlabel("time (ps)")
    ax.set_ylabel("T (K)")
    ax.set_title('NVE, splitting "F" (no filter)', fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# --------------------------------------------------------------------------- run
def parse_overrides(pairs: List[str]) -> Dict[str, float]:
    out = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--set expects KEY=VALUE, got {pair!r}")
        out[key.strip()] = float(value)
    return out


def model_protocol(stem: str, system_name: Optional[str], lengths_mode: str, overrides: Dict[str, float],
                   out_json: Path, overwrite: bool) -> Tuple[str, Dict[str, float]]:
    """The built-in system a model is validated on (``system_name``, else from its
    ``<system>-<N>fs`` name ``stem``) and the run lengths (ps) of that system's protocol in
    ``lengths_mode`` with ``overrides``. Refuses an existing ``out_json`` unless ``overwrite``,
    before anything runs."""
    system_name = system_name or system_from_model_name(stem)
    if system_name is None:
        raise SystemExit(f"cannot tell the system from the model name {stem!r}; pass --system")
    if system_name not in LENGTHS[lengths_mode]:
        raise SystemExit(f"no validation protocol for system {system_name!r} (known: {sorted(LENGTHS[lengths_mode])})")
    lengths = dict(LENGTHS[lengths_mode][system_name])
    unknown = set(overrides) - set(lengths)
    if unknown:
        raise SystemExit(f"unknown --set keys {sorted(unknown)} (known: {sorted(lengths)})")
    lengths.update(overrides)
    if out_json.exists() and not overwrite:
        raise SystemExit(f"{out_json} exists; pass --overwrite to replace it")
    return system_name, lengths


def validate_model(model_arg: str, system_name: Optional[str], out: Path, lengths_mode: str, overwrite: bool,
                   work_dir: Path, overrides: Dict[str, float], stability: Optional[bool], name: Optional[str],
                   threads: Optional[int], collision_rate: float = COLLISION_RATE, fallback: bool = True) -> Path:
    """Run every measurement for one model and write ``out/<name>.json`` (see the module docstring).
    ``collision_rate`` (1/ps) is FlashMD's Langevin friction; reference MD keeps ``COLLISION_RATE``.
    ``fallback``: FlashMD runs with the stride monitor (each run records its fallback share)."""
    import torch

    from openmm_flashmd import load_model, read_metadata

    stem = name or Path(model_arg).stem
    out_json = out / f"{stem}.json"
    system_name, lengths = model_protocol(stem, system_name, lengths_mode, overrides, out_json, overwrite)
    if threads:
        torch.set_num_threads(threads)
    out.mkdir(parents=True, exist_ok=True)
    work_dir = Path(work_dir)
    began = time.perf_counter()

    model = load_model(model_arg)
    metadata = read_metadata(model)
    stride = float(metadata["stride"])
    setup = Setup(system_name, threads, fallback)
    reference, ref_arrays, ran_reference = load_or_run_reference(setup, lengths, out, work_dir, overwrite)
    start = State(ref_arrays["start_positions"], ref_arrays["start_velocities"], ref_arrays["start_box"])
    blocks = int(lengths["blocks"])

    bundled = bundled_strides(system_name)
    stride_fs = int(round(stride * 1000))
    if stability is None:
        stability = not bundled or stride_fs >= max(bundled)
        stability_reason = ("largest bundled stride of the system" if bundled else "no bundled models of the system")
        if not stability:
            stability_reason = f"not the largest bundled stride ({max(bundled)} fs); pass --stability"
    else:
        stability_reason = "--stability" if stability else "--no-stability"

    result: Dict[str, Any] = {
        "benchmark": "validation-model", "model": stem, "model_source": str(model_arg), "system": system_name,
        "stride_ps": stride, "n_atoms": setup.n_atoms, "lengths_mode": lengths_mode, "lengths": lengths,
        "overrides": overrides,
        "temperature_K": setup.temperature, "collision_rate_per_ps": collision_rate, "seed": SEED,
        "fallback": fallback,
        "model_metadata": {k: metadata.get(k) for k in ("kind", "hypers", "validation", "cutoff")},
        "reference": {"file": f"reference-{system_name}.json", "settings_hash": reference.get("settings_hash"),
                      "computed_in_this_run": ran_reference},
    }
    series: Dict[str, np.ndarray] = {}
    plots: List[str] = []

    # 1 (+5): NVT with and without filter; stability continues the filtered run
    stability_to = lengths["stability_ps"] if stability else 0.0
    nvt_f, series_f, rec_f = flashmd_nvt(setup, model, "O F E O", start, lengths, stride, reference, True, stability_to,
                                         collision_rate)
    nvt_n, series_n, _ = flashmd_nvt(setup, model, "O F O", start, lengths, stride, reference, False,
                                     collision_rate=collision_rate)
    stab = nvt_f.pop("stability", None)
    result["nvt"] = {"filter": nvt_f, "no_filter": nvt_n, "reference": reference.get("nvt")}
    result["stability"] = {"ran": bool(stability), "reason": stability_reason, **(stab or {})}
    for prefix, s in (("nvt_filter", series_f), ("nvt_no_filter", series_n)):
        series.update({f"{prefix}_{k}": v for k, v in s.items()})
    ref_series = {"time": ref_arrays["nvt_time"]}
    ref_series.update({k[4:]: v for k, v in ref_arrays.items() if k.startswith("nvt_T_")})
    plot = out / f"{stem}-temperature.png"
    plot_temperatures(plot, {"FlashMD + filter": series_f, "FlashMD, no filter": series_n,
                             "reference MD": ref_series}, setup.temperature,
                      window_ps=max(lengths["nvt_ps"] / 50, lengths["sample_ps"]))
    plots.append(plot.name)

    traj = _trajectory(setup, rec_f.positions, rec_f.boxes) if rec_f.positions else None
    if traj is not None:
        _save_work(work_dir, f"{stem}-nvt-filter", positions=np.asarray(rec_f.positions), boxes=np.asarray(rec_f.boxes))

    # 2: water structure and density
    if "rdf_r" in ref_arrays:
        r = ref_arrays["rdf_r"]
        result["rdf"] = {}
        if traj is not None and traj.n_frames >= 1:
            result["rdf"], curves = rdf_comparison(traj, reference, ref_arrays)
            for pair, pair_curves in curves.items():
                pair_curves["FlashMD + filter"] = pair_curves.pop("FlashMD")
                series[f"rdf_{pair}"] = pair_curves["FlashMD + filter"].astype(np.float32)
            series["rdf_r"] = r.astype(np.float32)
            plot = out / f"{stem}-rdf.png"
            plot_rdfs(plot, r, curves)
            plots.append(plot.name)
    if setup.periodic and "npt" in reference and lengths.get("npt_ps", 0) > 0:
        npt, rho = flashmd_npt(setup, model, start, lengths, stride, collision_rate)
        ref_rho = reference["npt"]["density_g_cm3"]
        if "density_g_cm3" in npt:
            d = npt["density_g_cm3"]
            npt["relative_difference_percent"] = 100.0 * (d["mean"] - ref_rho["mean"]) / ref_rho["mean"]
            sems = [s for s in (d["sem"], ref_rho["sem"]) if s is not None and math.isfinite(s)]
            npt["relative_difference_sem_percent"] = (100.0 * math.hypot(d["sem"], ref_rho["sem"]) / ref_rho["mean"]
                                                      if len(sems) == 2 else math.nan)
        result["npt"] = {"flashmd": npt, "reference": reference["npt"]}
        series["npt_density"] = rho.astype(np.float32)

    # 3: alanine Ramachandran
    if "phi" in ref_arrays:
        from openmm_flashmd.analysis.dihedrals import (basin_populations, block_bootstrap, jensen_shannon,
                                                       ramachandran, ramachandran_histogram)

        hist_ref = ramachandran_histogram(ref_arrays["phi"], ref_arrays["psi"])
        rama: Dict[str, Any] = {"bins": 36, "js_units": "nats",
                                "js_reference_halves": reference.get("js_between_halves"),
                                "basins": {"reference": reference.get("basins")}}
        if traj is not None and traj.n_frames >= 2:
            phi, psi = ramachandran(traj)
            phi, psi = phi[:, 0], psi[:, 0]
            hist = ramachandran_histogram(phi, psi)
            rama["js_divergence"] = jensen_shannon(hist, hist_ref)
            rama["frames"] = int(len(phi))
            value, sem = block_bootstrap(basin_populations, phi, psi, n_blocks=max(2, 2 * blocks))
            rama["basins"]["flashmd"] = {k: {"value": value[k], "sem": sem[k]} for k in value}
            series["phi"], series["psi"] = phi.astype(np.float32), psi.astype(np.float32)
            plot = out / f"{stem}-ramachandran.png"
            plot_ramachandran(plot, {"reference MD": hist_ref, f"FlashMD {stride_fs} fs + filter": hist})
            plots.append(plot.name)
        result["ramachandran"] = rama

    # 4: NVE without filter
    nve, nve_series = flashmd_nve(setup, model, start, lengths, stride)
    result["nve"] = nve
    series.update({f"nve_{k}": v for k, v in nve_series.items()})
    if len(nve_series["time"]) > 1:
        plot = out / f"{stem}-nve.png"
        plot_nve(plot, nve_series["time"], nve_series["T_all"], setup.temperature)
        plots.append(plot.name)

    # 6: cost
    cost: Dict[str, Any] = {}
    if ran_reference:
        cost.update(reference_s_per_ps=reference["cost"]["reference_s_per_ps"], reference_source="reference NVT run")
    else:
        system = copy.deepcopy(setup.system)
        integrator = setup.langevin()
        context = setup.context(system, integrator)
        start.apply(context, setup.periodic)
        timing = advance(context, integrator, setup.timestep, lengths["ref_cost_ps"], 1000, "reference MD timing")
        cost.update(reference_s_per_ps=timing["wall_s"] / timing["done_ps"],
                    reference_source=f"{timing['done_ps']:g} ps of reference MD timed in this run")
        del context, integrator
    cost["flashmd_s_per_ps"] = nvt_f.get("s_per_ps", math.nan)
    cost["flashmd_source"] = 'FlashMD NVT "O F E O" run (step calls only' + (
        ", fallback strides included)" if fallback else ")")
    cost["speedup"] = cost["reference_s_per_ps"] / cost["flashmd_s_per_ps"] if cost["flashmd_s_per_ps"] else math.nan
    if nvt_f.get("failed_at_ps") is not None:  # an exploded system's neighbour lists are not representative
        cost["speedup"] = math.nan
        cost["flashmd_source"] += f", failed after {nvt_f.get('completed_ps', 0):g} ps: not representative"
    cost["reference_timestep_ps"] = setup.timestep
    result["cost"] = cost

    result["plots"] = plots
    result["wall_s"] = time.perf_counter() - began
    result["date"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    result["stack"] = stack_info()
    np.savez_compressed(out / f"{stem}.npz", **series)
    write_json(out_json, _clean(result), overwrite=overwrite)
    return out_json


# --------------------------------------------------------------------------- friction scan
#: Default Langevin frictions (1/ps) of the friction scan.
FRICTION_RATES = (1.0, 10.0, 30.0, 100.0)


def diffusion_fit_window(length_ps: float) -> Tuple[float, float]:
    """Lag window (ps) for the self-diffusion fit: 1-5 ps, shrunk for short (test) runs."""
    return min(1.0, length_ps / 10), min(5.0, length_ps / 4)


def oxygen_diffusion(setup: Setup, recorder: Recorder, length_ps: float) -> Optional[float]:
    """Self-diffusion coefficient (nm^2/ps) of the O atoms sampled by ``recorder`` (water
    systems only, else None)."""
    from openmm_flashmd.analysis.transport import self_diffusion

    if not (setup.periodic and setup.name.startswith("water")) or len(recorder.positions) < 3:
        return None
    # advance() ends with a shorter chunk when the length is not a whole number of sample
    # intervals: keep the evenly spaced frames only
    times = np.asarray(recorder.time, dtype=float)
    spacing = np.diff(times)
    uneven = np.flatnonzero(~np.isclose(spacing, spacing[0]))
    even = int(uneven[0]) + 1 if len(uneven) else len(times)
    traj = _trajectory(setup, recorder.positions[:even], recorder.boxes[:even])
    traj.time = times[:even]
    return self_diffusion(traj, "element O", fit_ps=diffusion_fit_window(length_ps))


def reference_nvt_at(setup: Setup, start: State, lengths: Dict[str, float], collision_rate: float) -> Dict[str, Any]:
    """Reference MD at friction ``collision_rate`` (1/ps) from ``start``: O self-diffusion (nm^2/ps)."""
    dt = setup.timestep
    integrator = setup.langevin(collision_rate)
    context = setup.context(copy.deepcopy(setup.system), integrator)
    start.apply(context, setup.periodic)
    advance(context, integrator, dt, lengths["settle_ps"], 1000, f"reference NVT {collision_rate:g}/ps settle")
    rec = setup.recorder(positions=True)
    interval = max(1, int(round(lengths["sample_ps"] / dt)))
    run = advance(context, integrator, dt, lengths["nvt_ps"], interval, f"reference NVT {collision_rate:g}/ps", rec)
    return {"length_ps": run["done_ps"], "diffusion_O_nm2_per_ps": oxygen_diffusion(setup, rec, run["done_ps"])}


def plot_friction(path: Path, rows: List[Dict[str, Any]]) -> None:
    plt = _plt()
    rates = [row["collision_rate_per_ps"] for row in rows]
    fig, (ax_t, ax_d) = plt.subplots(1, 2, figsize=(10, 3.8))
    elements = sorted({k for row in rows for k in (row["flashmd"].get("temperature_K") or {}) if k != "all"})
    for element in elements:
        ax_t.plot(rates, [((row["flashmd"].get("temperature_K") or {}).get(element) or {}).get("dev_reference",
                                                                                             math.nan)
                          for row in rows], "o-", label=element)
    ax_t.axhline(0.0, color="k", lw=0.8)
    ax_t.set(xscale="log", xlabel="Langevin friction (1/ps)", ylabel="T − reference MD (K)",
             title="per-element temperature, FlashMD + filter")
    ax_t.legend()
    if any(row["flashmd"].get("diffusion_O_nm2_per_ps") is not None for row in rows):
        for key, label in (("flashmd", "FlashMD + filter"), ("reference", "reference MD")):
            ax_d.plot(rates, [row[key].get("diffusion_O_nm2_per_ps") or math.nan for row in rows], "o-", label=label)
        ax_d.set(xscale="log", xlabel="Langevin friction (1/ps)", ylabel="D(O) (nm²/ps)",
                 title="O self-diffusion (dynamics)")
        ax_d.legend()
    else:
        ax_d.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def friction_scan(model_arg: str, system_name: Optional[str], rates: List[float], out: Path, lengths_mode: str,
                  overwrite: bool, work_dir: Path, overrides: Dict[str, float], threads: Optional[int]) -> Path:
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
    system_name, lengths = model_protocol(stem, system_name, lengths_mode, overrides, out_json, overwrite)
    if not rates or min(rates) <= 0:
        raise SystemExit(f"frictions must be positive (1/ps), got {rates}")
    if threads:
        torch.set_num_threads(threads)
    began = time.perf_counter()
    model = load_model(model_arg)
    stride = float(read_metadata(model)["stride"])
    setup = Setup(system_name, threads)
    validation_dir = out / "validation"
    validation_dir.mkdir(parents=True, exist_ok=True)
    # the cached reference is replaced only by `validate.py reference --overwrite`, never here
    reference, ref_arrays, _ = load_or_run_reference(setup, lengths, validation_dir, Path(work_dir), False)
    start = State(ref_arrays["start_positions"], ref_arrays["start_velocities"], ref_arrays["start_box"])

    rows = []
    for rate in sorted(rates):
        nvt, _, rec = flashmd_nvt(setup, model, "O F E O", start, lengths, stride, reference, True,
                                  collision_rate=rate)
        flashmd = {k: nvt.get(k) for k in ("completed_ps", "failed_at_ps", "error", "temperature_K", "filter")}
        if nvt.get("failed_at_ps") is None and rec.positions:
            traj = _trajectory(setup, rec.positions, rec.boxes)
            if "rdf_r" in ref_arrays:
                flashmd["rdf"] = rdf_comparison(traj, reference, ref_arrays)[0]
            flashmd["diffusion_O_nm2_per_ps"] = oxygen_diffusion(setup, rec, nvt["completed_ps"])
        rows.append({"collision_rate_per_ps": rate, "flashmd": flashmd,
                     "reference": reference_nvt_at(setup, start, lengths, rate)})

    plot = validation_dir / f"friction-{stem}.png"
    plot_friction(plot, rows)
    result = {"benchmark": "friction_scan", "model": stem, "system": system_name, "stride_ps": stride,
              "lengths_mode": lengths_mode, "lengths": lengths, "temperature_K": setup.temperature,
              "reference_temperature_K": (reference.get("nvt") or {}).get("temperature_K"),
              "diffusion_fit_window_ps": list(diffusion_fit_window(lengths["nvt_ps"])),
              "rates": rows, "plot": str(plot.relative_to(out)), "wall_s": time.perf_counter() - began,
              "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "stack": stack_info()}
    write_json(out_json, _clean(result), overwrite=overwrite)
    return out_json


# --------------------------------------------------------------------------- summarize
def _get(data: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def _model_for(models: Dict[str, Dict], system: str, stride_fs: int) -> Optional[Tuple[str, Dict]]:
    preferred = f"{system}-{stride_fs}fs"
    if preferred in models:
        return preferred, models[preferred]
    for name, data in sorted(models.items()):
        if data.get("system") == system and int(round(data.get("stride_ps", 0) * 1000)) == stride_fs:
            return name, data
    return None


def evaluate_goals(models: Dict[str, Dict]) -> List[Dict[str, Any]]:
    """One row per goal (and per model for the NVE goal): value, threshold, met (None: not measured).
    Goals are judged on runs at the validation's friction only; variants run with another
    ``--collision-rate`` are shown in the table, not judged."""
    models = {k: v for k, v in models.items() if v.get("collision_rate_per_ps", COLLISION_RATE) == COLLISION_RATE}
    rows = []
    for goal in GOALS:
        targets = ([(n, d) for n, d in sorted(models.items())] if goal["system"] is None
                   else [m for m in [_model_for(models, goal["system"], goal["stride_fs"])] if m])
        if not targets:
            rows.append({"goal": goal["key"], "text": goal["text"], "model": None, "value": None,
                         "threshold": goal["threshold"], "met": None, "note": "not measured"})
            continue
        for name, data in targets:
            notes: List[str] = []
            if goal["key"] == "water_T":
                t = _get(data, "nvt", "filter", "temperature_K") or {}
                # constrained systems: elements against reference MD, overall against the target
                key_of = (lambda k: "dev_target" if k == "all" else "dev_reference") if goal["system"] == "water-rigid" \
                    else (lambda k: "dev_target")
                devs = {k: abs(v[key_of(k)]) for k, v in t.items() if v.get(key_of(k)) is not None}
                value = max(devs.values()) if devs else None
                if devs:
                    worst = max(devs, key=devs.get)
                    notes.append(f"worst: {worst}; overall {t['all']['dev_target']:+.2f} K")
            elif goal["key"] == "water_rdf":
                value = _get(data, "rdf", "O-O", "difference_percent")
            elif goal["key"] == "water_density":
                value = _get(data, "npt", "flashmd", "relative_difference_percent")
                value = abs(value) if value is not None else None
            elif goal["key"] == "alanine_js":
                value = _get(data, "ramachandran", "js_divergence")
                floor = _get(data, "ramachandran", "js_reference_halves")
                if floor is not None:
                    notes.append(f"reference half vs half: {floor:.4f}")
            else:
                value = _get(data, "nve", "T_drift_K")
                value = abs(value) if value is not None else None
                length = _get(data, "nve", "completed_ps")
                if length is not None:
                    notes.append(f"after {length:g} ps")
            run_of_goal = {"nve": ("nve",), "water_density": ("npt", "flashmd")}.get(goal["key"], ("nvt", "filter"))
            failed = _get(data, *run_of_goal, "failed_at_ps") is not None
            if failed:
                notes.append(f"run failed at {_get(data, *run_of_goal, 'failed_at_ps'):.4g} ps")
            if data.get("lengths_mode") != "full":
                notes.append(f"{data.get('lengths_mode')} lengths")
            if _get(data, "reference", "stale"):
                notes.append("compared with an older reference MD run")
            if data.get("overrides"):
                notes.append("lengths overridden: " + ", ".join(f"{k}={v:g}" for k, v in sorted(data["overrides"].items())))
            met = False if failed else (None if value is None else bool(value <= goal["threshold"]))
            rows.append({"goal": goal["key"], "text": goal["text"], "model": name, "value": value,
                         "threshold": goal["threshold"], "met": met, "note": "; ".join(notes)})
    return rows


def _pm(entry: Optional[Dict], key: str = "mean", spec: str = ".2f") -> str:
    if not entry or entry.get(key) is None:
        return "—"
    sem = entry.get("sem")
    return f"{entry[key]:{spec}} ± {sem:{spec}}" if sem is not None else f"{entry[key]:{spec}}"


def _failed(run: Optional[Dict]) -> str:
    return "" if not run or run.get("failed_at_ps") is None else f" (failed at {run['failed_at_ps']:.2f} ps)"


def _fallback(run: Optional[Dict]) -> str:
    """A run's fallback share, e.g. "; fallback MD 2.1 % of strides" (empty without the monitor)."""
    stats = (run or {}).get("fallback")
    if not stats or not stats.get("strides"):
        return ""
    return f"; fallback MD {_fmt(stats['fallback_fraction'], '.1%')} of {stats['strides']} strides"


def card_rows(record: Dict[str, Any]) -> List[List[str]]:
    """(quantity, value) rows summarising one model's record, for its model card."""
    rows = []
    nvt = record.get("nvt", {})
    for key, label in (("filter", "with filter (O F E O)"), ("no_filter", "without filter (O F O)")):
        run = nvt.get(key)
        if run:
            temps = run.get("temperature_K", {})
            per_element = ", ".join(f"{k} {_pm(v, spec='.1f')}" for k, v in temps.items() if k != "all")
            rows.append([f"NVT {record.get('temperature_K', 300.0):g} K {label}, {run['completed_ps']:g} ps: T (K)",
                         f"all {_pm(temps.get('all'), spec='.1f')}; {per_element}{_failed(run)}{_fallback(run)}"])
    ref_temps = nvt.get("reference", {}).get("temperature_K", {})
    if ref_temps:
        rows.append(["reference MD, same settings: T (K)",
                     ", ".join(f"{k} {_pm(v, spec='.1f')}" for k, v in ref_temps.items())])
    filt = nvt.get("filter", {}).get("filter")
    if filt:
        rows.append(["energy filter", f"mean scale {_fmt(filt['mean_scale'], '.4f')}, clamped "
                                      f"{_fmt(filt['clamped_fraction'], '.1%')} of {filt['strides']} strides"])
    for pair, entry in (record.get("rdf") or {}).items():
        rows.append([f"{pair} RDF, integrated absolute difference from reference",
                     _fmt(entry["difference_percent"], ".1f", " %")])
    npt = record.get("npt")
    if npt:
        rows.append(["NpT 1 bar density (g/cm³): FlashMD / reference",
                     f"{_pm(npt['flashmd'].get('density_g_cm3'), spec='.4f')} / "
                     f"{_pm(npt['reference'].get('density_g_cm3'), spec='.4f')} "
                     f"({_fmt(npt['flashmd'].get('relative_difference_percent'), '+.2f', ' %')}){_failed(npt['flashmd'])}"])
    rama = record.get("ramachandran")
    if rama:
        rows.append(["Ramachandran JS divergence vs reference (nats)",
                     f"{_fmt(rama.get('js_divergence'), '.3f')} (two halves of the reference: "
                     f"{_fmt(rama.get('js_reference_halves'), '.3f')})"])
        flashmd = rama["basins"].get("flashmd", {})
        for basin, reference in rama["basins"]["reference"].items():
            rows.append([f"population {basin}: FlashMD / reference",
                         f"{_pm(flashmd.get(basin), 'value', '.3f')} / {_pm(reference, 'value', '.3f')}"])
    nve = record.get("nve")
    if nve:
        rows.append([f"NVE without filter, {nve['completed_ps']:g} ps: T start → end (K)",
                     f"{_fmt(nve.get('T_start_K'), '.1f')} → {_fmt(nve.get('T_end_K'), '.1f')} "
                     f"({_fmt(nve.get('T_drift_K'), '+.1f', ' K')}){_failed(nve)}{_fallback(nve)}"])
    stability = record.get("stability") or {}
    if stability.get("ran"):
        rows.append([f"stability, NVT with filter, {stability['length_ps']:g} ps",
                     ("stable" if stability["stable"] else f"failed at {stability['failed_at_ps']:.2f} ps")
                     + _fallback(stability)])
    cost = record.get("cost")
    if cost:
        rows.append(["wall time per simulated ps: FlashMD / reference MD with the same classical potential (s)",
                     f"{_fmt(cost.get('flashmd_s_per_ps'))} / {_fmt(cost.get('reference_s_per_ps'))} "
                     f"(speedup {_fmt(cost.get('speedup'), '.2f', '×')}; {cost.get('flashmd_source', '')})"])
    return rows


def summary_markdown(merged: Dict[str, Any]) -> str:
    lines = ["# FlashMD validation against reference MD", "",
             "Generated by `python benchmarks/validate.py summarize`; every number comes from the JSON files "
             "in this folder. Temperatures are kinetic (mean ± block standard error), ΔT against the thermostat "
             "target; JS divergences in nats.", "", "## Goals", "",
             "| goal | model | value | threshold | met |", "|---|---|---:|---:|---|"]
    for row in merged["goals"]:
        met = {True: "met", False: "**not met**", None: "not measured"}[row["met"]]
        lines.append(f"| {row['text']} | {row['model'] or '—'} | {_fmt(row['value'], '.3g')} | {row['threshold']:g} | "
                     f"{met}{' (' + row['note'] + ')' if row['note'] else ''} |")
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
            lines += ["", f"NpT density (g/cm³): FlashMD {_pm(f.get('density_g_cm3'), spec='.4f')}, reference "
                          f"{_pm(r.get('density_g_cm3'), spec='.4f')}; difference "
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
              "goals": evaluate_goals(models), "models": models, "references": references,
              "stack": stacks[0] if stacks else stack_info(),
              "stacks_differ": any(s != stacks[0] for s in stacks)}
    merged = _clean(merged)
    target = Path(out).resolve().parent / "validation.json"
    write_json(target, merged, overwrite=True)
    summary = Path(out) / "summary.md"
    summary.write_text(summary_markdown(merged))
    print(f"wrote {summary}")
    return target


# --------------------------------------------------------------------------- CLI
def main(argv: Optional[List[str]] = None) -> int:
    global PROGRESS
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
    ref = sub.add_parser("reference", help="run (or reuse) only the reference MD of a system")
    ref.add_argument("system", help="built-in system, e.g. water")
    ref.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results folder (default %(default)s)")
    ref.add_argument("--lengths", choices=sorted(LENGTHS), default="full")
    ref.add_argument("--overwrite", action="store_true", help="replace a cached reference made with other settings")
    ref.add_argument("--work-dir", type=Path, default=DEFAULT_WORK, help="trajectories (default %(default)s)")
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
    fric.add_argument("--work-dir", type=Path, default=DEFAULT_WORK, help="trajectories (default %(default)s)")
    fric.add_argument("--threads", type=int, default=None, help="OpenMM CPU and torch threads (default: theirs)")
    fric.add_argument("--no-progress", action="store_true", help="no progress bars")
    summ = sub.add_parser("summarize", help="merge results into validation.json and summary.md")
    summ.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results folder (default %(default)s)")
    args = parser.parse_args(argv)
    if args.command == "run":
        PROGRESS = not args.no_progress
        validate_model(args.model, args.system, args.out, args.lengths, args.overwrite, args.work_dir,
                       parse_overrides(args.set), args.stability, args.name, args.threads, args.collision_rate,
                       args.fallback)
    elif args.command == "reference":
        args.out.mkdir(parents=True, exist_ok=True)
        load_or_run_reference(Setup(args.system, args.threads), dict(LENGTHS[args.lengths][args.system]), args.out,
                              args.work_dir, args.overwrite)
    elif args.command == "friction":
        PROGRESS = not args.no_progress
        args.out.mkdir(parents=True, exist_ok=True)
        friction_scan(args.model, args.system, args.rates, args.out, args.lengths, args.overwrite, args.work_dir,
                      parse_overrides(args.set), args.threads)
    else:
        summarize(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
