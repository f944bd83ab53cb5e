"""The main job: run FlashMD on a built-in or user System and write a report.

:func:`simulate` builds the System, the :class:`FlashMDIntegrator` and a
``Simulation``; it writes a trajectory (DCD or XTC), a CSV log
(:class:`FlashMDReporter`), checkpoints (so an interrupted run resumes with
``resume=True``) and a markdown report with plots.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
from pathlib import Path
from typing import Any, Dict, Optional

import openmm
from openmm import app, unit

from openmm_flashmd.analysis.report import REPORT_PLOTS, write_report
from openmm_flashmd.integrator import FlashMDError, FlashMDIntegrator
from openmm_flashmd.integrator.splitting import parse_splitting
from openmm_flashmd.reporters import FlashMDReporter
from openmm_flashmd.run_files import (
    OutputLock,
    RecordedCheckpointReporter,
    RunFilesError,
    atomic_write,
    record_path,
    restore_checkpoint,
    truncate_to_record,
)
from openmm_flashmd.systems import available_systems, get_system, get_system_for_barostat
from openmm_flashmd.systems.loading import load_system, make_platform, start_state

#: Built-in default of ``openmm-flashmd simulate``.
DEFAULT_SYSTEM = "water-rigid"
#: Bundled model used for a built-in system when no model is given.
DEFAULT_MODELS = {"water-rigid": "water-rigid-16fs",
                  "alanine-dipeptide-implicit-hbonds": "alanine-dipeptide-implicit-hbonds-8fs"}

ENSEMBLES = {"nve": "F E", "nvt": "O F E O", "npt": "O F E O"}


#: Defaults of the run settings that :func:`simulate` records in ``settings.json`` (``duration``, ps:
#: of a System without an entry in :data:`DEFAULT_DURATIONS`).
DEFAULTS: Dict[str, Any] = {"system": DEFAULT_SYSTEM, "ensemble": "nvt", "pressure": 1.0, "collision_rate": 1.0,
                            "duration": 10.0, "report_interval": 0.16, "trajectory_format": "dcd", "seed": 0,
                            "fallback": True}

#: Default run length (ps) of a built-in system whose report needs more than ``DEFAULTS["duration"]``
#: to judge its temperature check: the length at which reference MD's own runs are judged and pass
#: (``benchmarks/trust_check_power.py``: 64 waters at 1/ps, 95 % of 20 runs at 400 ps, 80 % at 300 ps).
DEFAULT_DURATIONS: Dict[str, float] = {"water-rigid": 400.0}


def default_duration(system: Optional[str]) -> float:
    """The run length (ps) :func:`simulate` uses for ``system`` when none is given."""
    return DEFAULT_DURATIONS.get(system or DEFAULT_SYSTEM, DEFAULTS["duration"])


#: settings.json key of each run setting (a resume continues with these and refuses other values)
SETTINGS_KEYS: Dict[str, str] = {
    "system": "system", "structure": "structure", "model": "model", "ensemble": "ensemble",
    "temperature": "temperature_K", "pressure": "pressure_bar", "collision_rate": "collision_rate_per_ps",
    "report_interval": "report_interval_ps", "trajectory_format": "trajectory_format", "splitting": "splitting",
    "seed": "seed", "fallback": "fallback", "fallback_timestep": "fallback_timestep_ps",
    "system_options": "system_options",
}

#: the CLI flag of each setting whose flag is not its name with dashes, for messages
FLAGS: Dict[str, str] = {"duration": "--time", "trajectory_format": "--format", "fallback": "--no-fallback"}


def _flag(name: str) -> str:
    """The CLI flag of the setting ``name``."""
    return FLAGS.get(name, "--" + name.replace("_", "-"))


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`simulate`: a checkpoint was written; the message says how to resume."""


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


#: every file simulate writes into its output folder (``--overwrite`` removes exactly these)
OUTPUT_FILES = tuple(sorted({path.name for fmt in ("dcd", "xtc") for path in _outputs(Path(), fmt).values()}
                            | {record_path(_outputs(Path(), "dcd")["checkpoint"]).name, *REPORT_PLOTS}))


def _clear(output_dir: Path) -> None:
    """Remove an earlier run's outputs; refuse when the folder holds files simulate did not write."""
    foreign = sorted(p.name for p in output_dir.iterdir() if p.name not in OUTPUT_FILES and p.name != ".lock"
                     and not p.name.startswith("."))
    if foreign:
        raise FileExistsError(f"{output_dir} holds files that simulate did not write ({', '.join(foreign[:5])}); "
                              "--overwrite only replaces a simulate output folder, choose another folder")
    for name in OUTPUT_FILES:
        (output_dir / name).unlink(missing_ok=True)


def _same(key: str, given: Any, recorded: Any) -> bool:
    if key == "splitting":
        return parse_splitting(given) == parse_splitting(recorded)
    if isinstance(recorded, float) or isinstance(given, float):
        return recorded is not None and abs(float(given) - float(recorded)) <= 1e-9 * max(1.0, abs(float(recorded)))
    return given == recorded


def _resolve(given: Dict[str, Any], settings_path: Path, resume: bool) -> Dict[str, Any]:
    """The run's settings: on resume those in ``settings.json`` (a given value that differs is an
    error, except ``duration``, which extends or shortens the run); otherwise the given ones or
    :data:`DEFAULTS`."""
    if not resume:
        settings = {k: (DEFAULTS.get(k) if v is None else v) for k, v in given.items()}
        settings["duration"] = given["duration"] or default_duration(settings["system"])
        return settings
    try:
        recorded = json.loads(settings_path.read_text())
    except (OSError, ValueError):
        raise RunFilesError(f"cannot resume: {settings_path} is missing or unreadable; start again with "
                            "--overwrite") from None
    settings, conflicts = dict(given), []
    for name, key in SETTINGS_KEYS.items():
        if key not in recorded:  # a run from an older version: use what is given
            settings[name] = DEFAULTS.get(name) if given[name] is None else given[name]
            continue
        if given[name] is not None and not _same(key, given[name], recorded[key]):
            conflicts.append(f"{_flag(name)} {given[name]} (the run has {recorded[key]})")
        settings[name] = recorded[key]
    if conflicts:
        raise ValueError(f"a resume continues the run in {settings_path}; these differ from it: "
                         + "; ".join(conflicts) + ". Leave them out, or start a new run")
    settings["duration"] = given["duration"] if given["duration"] is not None else recorded.get(
        "duration_ps", default_duration(settings["system"]))
    return settings


def _check_positive(**values: Optional[float]) -> None:
    for name, value in values.items():
        if value is not None and not (math.isfinite(float(value)) and float(value) > 0.0):
            raise ValueError(f"{_flag(name)} must be a positive finite number, got {value}")


def simulate(
    output_dir: os.PathLike,
    system: Optional[str] = None,
    structure: Optional[str] = None,
    model: Optional[str] = None,
    ensemble: Optional[str] = None,
    temperature: Optional[float] = None,
    pressure: Optional[float] = None,
    collision_rate: Optional[float] = None,
    duration: Optional[float] = None,
    report_interval: Optional[float] = None,
    trajectory_format: Optional[str] = None,
    splitting: Optional[str] = None,
    platform: Optional[str] = None,
    seed: Optional[int] = None,
    fallback: Optional[bool] = None,
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
        serialized System XML file (then ``structure`` gives PDB/PDBx or State XML); default
        ``water-rigid``.
    model : bundled model name or file; default from :data:`DEFAULT_MODELS` for built-in systems
        (``water-rigid-16fs`` for the default rigid water box, ``alanine-dipeptide-implicit-hbonds-8fs``
        for alanine dipeptide with constrained X-H bonds).
    ensemble : ``nve``, ``nvt`` (Langevin + energy filter, the default) or ``npt`` (adds a
        ``MonteCarloBarostat`` at ``pressure`` bar, default 1; a built-in system's cutoff is lowered to
        0.45 x its box edge if needed, see :func:`~openmm_flashmd.systems.get_system_for_barostat`).
    temperature : K (default: the built-in system's, else 300).
    collision_rate : 1/ps (default 1). report_interval : ps (default 0.16).
    duration : ps (default 400 for ``water-rigid``, long enough for the report to judge its
        temperature within 5 K; 10 for other systems, whose report then says how long a run
        would resolve it; see :data:`DEFAULT_DURATIONS`).
    trajectory_format : ``dcd`` (default) or ``xtc``.
    seed : random seed of the starting velocities and of the integrator's noise (``seed + 1``, as
        OpenMM takes 0 for "choose one"); default 0. The same seed gives the same run, bit for bit
        on the Reference platform (tested), resumed or not.
    fallback, fallback_timestep : the stride monitor of :class:`FlashMDIntegrator` (on by
        default; the fallback MD's longest substep in ps, default from the model's metadata).
    overwrite : replace an earlier run in ``output_dir`` (its files are removed first; a folder
        holding other files is refused).
    resume : continue the run in ``output_dir`` exactly as ``settings.json`` records it: settings
        left as ``None`` are taken from there, a different value is an error; ``duration`` may
        change (the new total). The checkpoint must match its record (``checkpoint.json``), and
        the trajectory and log are cut back to what they held at the checkpoint.

    An existing non-empty ``output_dir`` is refused unless ``overwrite`` or ``resume`` is set,
    and a folder another process is writing to is refused (:class:`RunFilesError`). Every
    report interval writes a frame, a log row and a checkpoint (atomically, with its record).
    Ctrl-C writes a checkpoint and raises :class:`RunInterrupted`, whose message says how to
    resume. With ``fallback=False`` a failed stride (:class:`FlashMDError`) stops the run: the
    report is still written (its trust checks say the run did not finish) and the error is
    raised again.
    """
    given = {"system": system, "structure": structure, "model": model, "ensemble": ensemble,
             "temperature": temperature, "pressure": pressure, "collision_rate": collision_rate,
             "duration": duration, "report_interval": report_interval, "trajectory_format": trajectory_format,
             "splitting": splitting, "seed": seed, "fallback": fallback, "fallback_timestep": fallback_timestep,
             "system_options": system_options}
    _check_positive(temperature=temperature, pressure=pressure, collision_rate=collision_rate, duration=duration,
                    report_interval=report_interval, fallback_timestep=fallback_timestep)
    if seed is not None and int(seed) < 0:
        raise ValueError(f"--seed must be 0 or positive, got {seed}")
    if overwrite and resume:
        raise ValueError("overwrite and resume exclude each other")
    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise NotADirectoryError(f"{output_dir} exists and is not a folder")
    if resume and not (output_dir / "settings.json").exists():
        raise FileNotFoundError(f"cannot resume: {output_dir} holds no started run (no settings.json: it stopped "
                                "while setting up); start again with --overwrite")
    if output_dir.exists() and any(p for p in output_dir.iterdir() if p.name != ".lock") and not (overwrite or resume):
        raise FileExistsError(f"{output_dir} exists and is not empty; pass --overwrite (overwrite=True) to replace "
                              "the run in it or --resume (resume=True) to continue it")
    output_dir.mkdir(parents=True, exist_ok=True)
    with OutputLock(output_dir):
        if overwrite:
            _clear(output_dir)
        run = _Run(output_dir, _resolve(given, output_dir / "settings.json", resume), resume, platform)
        return run.execute(progress)


def _validation_reference(system, positions, box, source) -> Optional[str]:
    """The cached reference MD of ``openmm-flashmd validate`` for this System and start structure
    (its per-element temperatures make the report's trust check), or None."""
    from openmm_flashmd.validation.reference import find_cached_reference
    from openmm_flashmd.validation.target import system_identity

    stem = Path(str(source)).stem if isinstance(source, (str, os.PathLike)) else "system"
    found = find_cached_reference(system_identity(system, positions, box, stem))
    return None if found is None else str(found)


class _Run:
    """One simulate job, built from resolved settings (see :func:`simulate`)."""

    def __init__(self, output_dir: Path, settings: Dict[str, Any], resume: bool, platform: Optional[str]):
        ensemble = str(settings["ensemble"]).lower()
        if ensemble not in ENSEMBLES:
            raise ValueError(f"ensemble must be one of {sorted(ENSEMBLES)}, got {ensemble!r}")
        if settings["trajectory_format"] not in ("dcd", "xtc"):
            raise ValueError(f"trajectory_format must be 'dcd' or 'xtc', got {settings['trajectory_format']!r}")
        self.output_dir, self.settings, self.resume, self.ensemble = output_dir, settings, resume, ensemble
        self.paths = _outputs(output_dir, settings["trajectory_format"])
        system = settings["system"]
        builder = get_system_for_barostat if ensemble == "npt" else get_system
        omm_system, built = load_system(
            builder(system, **(settings["system_options"] or {})) if system in available_systems() else system
        )
        self.positions, self.box, self.topology = start_state(omm_system, built, settings["structure"] or None)
        self.validation_reference = None if built else _validation_reference(omm_system, self.positions, self.box,
                                                                             system)
        if settings["temperature"] is None:
            settings["temperature"] = float(built.temperature if built else 300.0)
        temperature = float(settings["temperature"])
        if settings["model"] is None:
            settings["model"] = DEFAULT_MODELS.get(system)
            if settings["model"] is None:
                raise ValueError(f"no default model for system {system!r}; pass model= (a bundled name or a file)")
        if ensemble == "npt":
            if not omm_system.usesPeriodicBoundaryConditions():
                raise ValueError("npt needs a periodic System")
            omm_system.addForce(openmm.MonteCarloBarostat(settings["pressure"] * unit.bar, temperature * unit.kelvin))
        fallback_timestep = settings["fallback_timestep"]
        self.integrator = FlashMDIntegrator(
            omm_system, settings["model"], temperature=None if ensemble == "nve" else temperature * unit.kelvin,
            collision_rate=settings["collision_rate"] / unit.picosecond,
            # OpenMM reads an integrator seed of 0 as "choose one": seed + 1 keeps every run reproducible
            splitting=settings["splitting"] or ENSEMBLES[ensemble], random_seed=int(settings["seed"]) + 1,
            topology=self.topology, fallback=settings["fallback"],
            fallback_timestep=None if fallback_timestep is None else fallback_timestep * unit.picosecond,
        )
        self.system, self.stride = omm_system, self.integrator.stride
        self.simulation = app.Simulation(self.topology, omm_system, self.integrator, make_platform(platform))
        self.total_steps = max(1, int(round(settings["duration"] / self.stride)))
        self.interval = max(1, int(round(settings["report_interval"] / self.stride)))

    def _record_settings(self) -> None:
        """Write ``settings.json``: every setting in :data:`SETTINGS_KEYS` as the run uses it, and
        what follows from them."""
        s = self.settings
        record = {key: s[name] for name, key in SETTINGS_KEYS.items()}
        record.update({
            "model": str(s["model"]), "ensemble": self.ensemble, "temperature_K": float(s["temperature"]),
            "report_interval_ps": self.interval * self.stride, "splitting": self.integrator.splitting,
            "stride_ps": self.stride, "duration_ps": s["duration"], "constraints": self.system.getNumConstraints(),
            "fallback_substeps": self.integrator.fallback_substeps if s["fallback"] else None,
            "validation_reference": self.validation_reference,
        })
        atomic_write(self.paths["settings"], json.dumps(record, indent=2) + "\n")

    def _start(self) -> None:
        simulation, paths = self.simulation, self.paths
        simulation.context.setPositions(self.positions)
        if self.box is not None and self.system.usesPeriodicBoundaryConditions():
            simulation.context.setPeriodicBoxVectors(*self.box)
        simulation.minimizeEnergy(maxIterations=200)
        simulation.context.setVelocitiesToTemperature(float(self.settings["temperature"]) * unit.kelvin,
                                                      self.settings["seed"])
        with io.StringIO() as handle:
            state = simulation.context.getState(getPositions=True)
            app.PDBFile.writeFile(self.topology, state.getPositions(), handle)
            atomic_write(paths["topology"], handle.getvalue())

    def execute(self, progress: bool) -> SimulationRun:
        simulation, paths = self.simulation, self.paths
        recorded = {"trajectory": paths["trajectory"], "log": paths["log"]}
        checkpoints = RecordedCheckpointReporter(paths["checkpoint"], self.interval, recorded)
        if self.resume:
            record = restore_checkpoint(simulation, paths["checkpoint"])
            truncate_to_record(record, recorded)
        else:
            self._start()
            checkpoints.save(simulation)  # step 0: a run with settings.json can always resume
        self._record_settings()  # last: its presence means the run started (on resume, the duration may change)
        reporter_class = app.DCDReporter if self.settings["trajectory_format"] == "dcd" else app.XTCReporter
        append = {name: path.exists() and path.stat().st_size > 0 for name, path in recorded.items()}
        simulation.reporters.append(reporter_class(str(paths["trajectory"]), self.interval,
                                                   append=append["trajectory"]))
        simulation.reporters.append(FlashMDReporter(paths["log"], self.interval, overwrite=True, append=append["log"]))
        simulation.reporters.append(checkpoints)

        from tqdm.auto import tqdm

        failure, remaining = None, self.total_steps - simulation.currentStep
        try:
            with tqdm(total=self.total_steps, initial=min(simulation.currentStep, self.total_steps), unit="stride",
                      disable=not progress, desc=f"FlashMD {self.stride * 1000:g} fs") as bar:
                while remaining > 0:
                    chunk = min(self.interval - simulation.currentStep % self.interval, remaining)
                    try:
                        simulation.step(chunk)
                    except FlashMDError as err:
                        failure = str(err)
                        break
                    remaining -= chunk
                    bar.update(chunk)
        except KeyboardInterrupt:
            checkpoints.save(simulation)
            raise RunInterrupted(f"interrupted at stride {simulation.currentStep} of {self.total_steps} "
                                 f"({simulation.currentStep * self.stride:g} ps); a checkpoint is in {self.output_dir}: "
                                 f"continue with openmm-flashmd simulate {self.output_dir} --resume") from None
        if failure is None:
            checkpoints.save(simulation)

        write_report(self.output_dir, paths["log"], paths["trajectory"], paths["topology"], paths["report"],
                     failure=failure)
        if failure is not None:
            raise FlashMDError(f"{failure}; the outputs up to the last report interval before it, the last good "
                               f"checkpoint and {paths['report'].name} are in {self.output_dir}")
        return SimulationRun(self.output_dir, paths["trajectory"], paths["log"], paths["checkpoint"], paths["report"],
                             simulation.currentStep)
