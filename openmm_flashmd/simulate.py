"""The main job: run FlashMD on a built-in or user System and write a report.

:func:`simulate` builds the System, the :class:`FlashMDIntegrator` and a
``Simulation``; it writes a trajectory (DCD or XTC), a CSV log
(:class:`FlashMDReporter`), checkpoints (so an interrupted run resumes with
``resume=True``) and a markdown report with plots.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, Dict, Optional

import openmm
from openmm import app, unit

from openmm_flashmd.integrator import FlashMDError, FlashMDIntegrator
from openmm_flashmd.model.protocol import load_model, read_metadata
from openmm_flashmd.reporters import FlashMDReporter
from openmm_flashmd.systems import available_systems, get_system, get_system_for_barostat
from openmm_flashmd.systems.loading import load_system, make_platform, start_state

#: Built-in default of ``openmm-flashmd simulate``.
DEFAULT_SYSTEM = "water-rigid"
#: Bundled model used for a built-in system when no model is given.
DEFAULT_MODELS = {"water-rigid": "water-rigid-16fs",
                  "alanine-dipeptide-implicit-hbonds": "alanine-dipeptide-implicit-hbonds-8fs"}

ENSEMBLES = {"nve": "F E", "nvt": "O F E O", "npt": "O F E O"}


@dataclasses.dataclass
class SimulationRun:
    """Where :func:`simulate` wrote its outputs."""

    output_dir: Path
    trajectory: Path
    log: Path
    checkpoint: Path
    report: Path
    steps: int


def _outputs(output_dir: Path, trajectory_format: str) -> Dict[str, Path]:
    return {
        "trajectory": output_dir / f"trajectory.{trajectory_format}",
        "log": output_dir / "log.csv",
        "checkpoint": output_dir / "checkpoint.chk",
        "report": output_dir / "report.md",
        "settings": output_dir / "settings.json",
        "topology": output_dir / "topology.pdb",
    }


def simulate(
    output_dir: os.PathLike,
    system: str = DEFAULT_SYSTEM,
    structure: Optional[str] = None,
    model: Optional[str] = None,
    ensemble: str = "nvt",
    temperature: Optional[float] = None,
    pressure: float = 1.0,
    collision_rate: float = 1.0,
    duration: float = 10.0,
    report_interval: float = 0.16,
    trajectory_format: str = "dcd",
    splitting: Optional[str] = None,
    platform: Optional[str] = None,
    seed: int = 0,
    fallback: bool = True,
    fallback_timestep: Optional[float] = None,
    overwrite: bool = False,
    resume: bool = False,
    progress: bool = True,
    system_options: Optional[Dict[str, Any]] = None,
) -> SimulationRun:
    """Run FlashMD and write trajectory, log, checkpoint and report into ``output_dir``.

    Parameters
    ----------
    system : built-in name (see :func:`openmm_flashmd.systems.available_systems`) or a
        serialized System XML file (then ``structure`` gives PDB/PDBx or State XML).
    model : bundled model name or file; default from :data:`DEFAULT_MODELS` for built-in systems
        (``water-rigid-16fs`` for the default rigid water box, ``alanine-dipeptide-implicit-hbonds-8fs``
        for alanine dipeptide with constrained X-H bonds).
    ensemble : ``nve``, ``nvt`` (Langevin + energy filter) or ``npt`` (adds a
        ``MonteCarloBarostat`` at ``pressure`` bar; a built-in system's cutoff is lowered to
        0.45 x its box edge if needed, see :func:`~openmm_flashmd.systems.get_system_for_barostat`).
    temperature : K (default: the built-in system's, else 300).
    collision_rate : 1/ps. duration, report_interval : ps.
    trajectory_format : ``dcd`` or ``xtc``.
    fallback, fallback_timestep : the stride monitor of :class:`FlashMDIntegrator` (on by
        default; the fallback MD's longest substep in ps, default from the model's metadata).
    overwrite / resume : an existing ``output_dir`` is refused unless one of them is set.

    With ``fallback=False`` a failed stride (:class:`FlashMDError`) stops the run: the report is still written (its
    trust checks say the run did not finish) and the error is raised again.
    """
    ensemble = ensemble.lower()
    if ensemble not in ENSEMBLES:
        raise ValueError(f"ensemble must be one of {sorted(ENSEMBLES)}, got {ensemble!r}")
    if trajectory_format not in ("dcd", "xtc"):
        raise ValueError(f"trajectory_format must be 'dcd' or 'xtc', got {trajectory_format!r}")
    output_dir = Path(output_dir)
    paths = _outputs(output_dir, trajectory_format)
    if resume and not paths["checkpoint"].exists():
        raise FileNotFoundError(f"cannot resume: {paths['checkpoint']} does not exist")
    if output_dir.exists() and any(output_dir.iterdir()) and not (overwrite or resume):
        raise FileExistsError(f"{output_dir} exists and is not empty; pass overwrite=True or resume=True")
    output_dir.mkdir(parents=True, exist_ok=True)

    builder = get_system_for_barostat if ensemble == "npt" else get_system
    omm_system, built = load_system(
        builder(system, **(system_options or {})) if system in available_systems() else system
    )
    positions, box, topology = start_state(omm_system, built, structure or None)
    temperature = float(temperature if temperature is not None else (built.temperature if built else 300.0))
    model_name = model or DEFAULT_MODELS.get(system)
    if model_name is None:
        raise ValueError(f"no default model for system {system!r}; pass model= (a bundled name or a file)")
    scripted = load_model(model_name)
    stride = read_metadata(scripted)["stride"]
    if ensemble == "npt":
        if not omm_system.usesPeriodicBoundaryConditions():
            raise ValueError("npt needs a periodic System")
        omm_system.addForce(openmm.MonteCarloBarostat(pressure * unit.bar, temperature * unit.kelvin))

    integrator = FlashMDIntegrator(
        omm_system, scripted, temperature=None if ensemble == "nve" else temperature * unit.kelvin,
        collision_rate=collision_rate / unit.picosecond, splitting=splitting or ENSEMBLES[ensemble],
        random_seed=seed, topology=topology, fallback=fallback,
        fallback_timestep=None if fallback_timestep is None else fallback_timestep * unit.picosecond,
    )
    simulation = app.Simulation(topology, omm_system, integrator, make_platform(platform))
    total_steps = max(1, int(round(duration / stride)))
    interval = max(1, int(round(report_interval / stride)))
    if resume:
        simulation.loadCheckpoint(str(paths["checkpoint"]))
    else:
        simulation.context.setPositions(positions)
        if box is not None and omm_system.usesPeriodicBoundaryConditions():
            simulation.context.setPeriodicBoxVectors(*box)
        simulation.minimizeEnergy(maxIterations=200)
        simulation.context.setVelocitiesToTemperature(temperature * unit.kelvin, seed)
        with open(paths["topology"], "w") as handle:
            state = simulation.context.getState(getPositions=True)
            app.PDBFile.writeFile(topology, state.getPositions(), handle)
        paths["settings"].write_text(json.dumps({
            "system": system, "structure": structure, "model": str(model_name), "ensemble": ensemble,
            "temperature_K": temperature, "pressure_bar": pressure, "collision_rate_per_ps": collision_rate,
            "stride_ps": stride, "duration_ps": duration, "report_interval_ps": interval * stride,
            "splitting": integrator.splitting, "seed": seed, "constraints": omm_system.getNumConstraints(),
            "fallback": fallback, "fallback_substeps": integrator.fallback_substeps if fallback else None,
        }, indent=2) + "\n")

    reporter_class = app.DCDReporter if trajectory_format == "dcd" else app.XTCReporter
    simulation.reporters.append(reporter_class(str(paths["trajectory"]), interval, append=resume))
    simulation.reporters.append(FlashMDReporter(paths["log"], interval, overwrite=True, append=resume))
    simulation.reporters.append(app.CheckpointReporter(str(paths["checkpoint"]), interval))

    remaining = total_steps - simulation.currentStep
    from tqdm.auto import tqdm

    failure = None
    with tqdm(total=total_steps, initial=simulation.currentStep, unit="stride", disable=not progress,
              desc=f"FlashMD {stride * 1000:g} fs") as bar:
        while remaining > 0:
            chunk = min(interval, remaining)
            try:
                simulation.step(chunk)
            except FlashMDError as err:
                failure = str(err)
                break
            remaining -= chunk
            bar.update(chunk)
    if failure is None:
        simulation.saveCheckpoint(str(paths["checkpoint"]))

    from openmm_flashmd.analysis.report import write_report

    write_report(output_dir, paths["log"], paths["trajectory"], paths["topology"], paths["report"], failure=failure)
    if failure is not None:
        raise FlashMDError(f"{failure}; the outputs up to the last report interval before it, the last good "
                           f"checkpoint and {paths['report'].name} are in {output_dir}")
    return SimulationRun(output_dir, paths["trajectory"], paths["log"], paths["checkpoint"], paths["report"],
                         simulation.currentStep)
