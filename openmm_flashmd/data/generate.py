"""Generate FlashMD reference data: independent NVE segments of an OpenMM System.

Protocol (as in the FlashMD paper): minimise (optional), thermalise with a
``LangevinMiddleIntegrator`` at the target temperature, then repeat

1. run an NVE segment with velocity Verlet at a small ``timestep``, storing positions,
   velocities, forces, potential energy and box every ``record_interval``;
2. decorrelate with Langevin dynamics for ``decorrelate`` ps; the final state starts the
   next segment.

Velocity Verlet is written as a ``CustomIntegrator`` so that stored velocities are at the
same instant as stored positions (OpenMM's ``VerletIntegrator`` is leap-frog and reports
half-step velocities). Constraints, if the System has any, are enforced (RATTLE-like
position and velocity projection) and recorded in the file.

The random stream of each Langevin stretch is seeded from ``(seed, segment)``; the state
that starts the next segment is stored after each segment, so an interrupted run continues
at the first unfinished segment (``resume=True``). On the CPU platform a resumed run
gives bitwise the same data as an uninterrupted one; the Reference platform draws
Langevin noise from one process-wide generator, so there a resumed run is statistically
equivalent but not bitwise identical.

See :mod:`openmm_flashmd.data.schema` for the file layout.
"""

from __future__ import annotations

import openmm_flashmd._plugins  # noqa: F401  (torch before openmm; see NOTES)

import datetime
import io
import json
import math
import os
from pathlib import Path
from typing import Any, Dict, Optional, Union

import h5py
import numpy as np
import openmm
from openmm import app, unit

from openmm_flashmd.analysis.thermo import system_masses
from openmm_flashmd.data import schema
from openmm_flashmd.run_files import OutputLock
from openmm_flashmd.systems.loading import load_system, make_platform, start_state

__all__ = ["generate", "SimulationError", "velocity_verlet_integrator"]

PathLike = Union[str, os.PathLike]

_DEFAULTS = dict(
    timestep=0.0005, record_interval=0.004, segment_length=0.5, thermalize=10.0,
    decorrelate=1.0, friction=1.0, seed=0,
)


class SimulationError(RuntimeError):
    """The reference simulation produced non-finite values or OpenMM failed."""


def velocity_verlet_integrator(timestep: float, constraint_tolerance: float = 1e-8) -> openmm.CustomIntegrator:
    """A velocity-Verlet ``CustomIntegrator`` (timestep in ps) with position and velocity
    constraints; velocities reported by the Context are synchronous with positions."""
    integ = openmm.CustomIntegrator(timestep)
    integ.addPerDofVariable("x1", 0.0)
    integ.addUpdateContextState()
    integ.addComputePerDof("v", "v+0.5*dt*f/m")
    integ.addComputePerDof("x", "x+dt*v")
    integ.addComputePerDof("x1", "x")
    integ.addConstrainPositions()
    integ.addComputePerDof("v", "v+0.5*dt*f/m+(x-x1)/dt")
    integ.addConstrainVelocities()
    integ.setConstraintTolerance(constraint_tolerance)
    return integ


def _derived_seed(seed: int, index: int) -> int:
    """A nonzero 31-bit seed for stream ``index`` (OpenMM treats 0 as 'pick at random')."""
    value = int(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, index + 2]).generate_state(1)[0])
    return value % (2**31 - 2) + 1


def _describe_system(system: openmm.System) -> str:
    parts = []
    for force in system.getForces():
        name = type(force).__name__
        if hasattr(force, "getNonbondedMethod") and hasattr(force, "getCutoffDistance"):
            try:
                cutoff = force.getCutoffDistance().value_in_unit(unit.nanometer)
            except AttributeError:
                cutoff = float(force.getCutoffDistance())
            name += f"(method {force.getNonbondedMethod()}, cutoff {cutoff:.3f} nm)"
        parts.append(name)
    return "OpenMM System with " + ", ".join(parts)


def _pdb_text(topology: app.Topology, positions_nm: np.ndarray) -> str:
    buf = io.StringIO()
    app.PDBFile.writeFile(topology, positions_nm * unit.nanometer, buf)
    return buf.getvalue()


def _context(system, integrator, platform):
    return openmm.Context(system, integrator) if platform is None else openmm.Context(system, integrator, platform)


def _check_finite(arrays: Dict[str, np.ndarray], where: str) -> None:
    for name, arr in arrays.items():
        if not np.all(np.isfinite(arr)):
            raise SimulationError(
                f"non-finite {name} {where}; the timestep may be too large, the structure unminimised "
                "or the temperature too high"
            )


def _langevin(system, platform, state_xml: Optional[str], temperature, friction, timestep, duration, seed):
    """Run Langevin dynamics for ``duration`` ps from ``state_xml`` and return the final State."""
    integ = openmm.LangevinMiddleIntegrator(temperature, friction, timestep)
    integ.setRandomNumberSeed(seed)
    integ.setConstraintTolerance(1e-8)
    ctx = _context(system, integ, platform)
    try:
        ctx.setState(openmm.XmlSerializer.deserialize(state_xml))
        n_steps = int(round(duration / timestep))
        if n_steps > 0:
            integ.step(n_steps)
        state = ctx.getState(getPositions=True, getVelocities=True, getEnergy=True)
    except openmm.OpenMMException as err:
        raise SimulationError(f"OpenMM failed during Langevin dynamics: {err}") from err
    finally:
        del ctx
    _check_finite({"positions": state.getPositions(asNumpy=True)._value,
                   "velocities": state.getVelocities(asNumpy=True)._value}, "during Langevin dynamics")
    return state


def _ratio(a: float, b: float, what: str) -> int:
    n = a / b
    k = int(round(n))
    if k < 1 or abs(n - k) > 1e-6 * max(1.0, n):
        raise ValueError(f"{what}: {a} / {b} = {n} must be a positive integer")
    return k


def generate(
    output: PathLike,
    system: Any = None,
    structure: Any = None,
    *,
    temperature: Optional[float] = None,
    timestep: Optional[float] = None,
    record_interval: Optional[float] = None,
    n_segments: Optional[int] = None,
    segment_length: Optional[float] = None,
    thermalize: Optional[float] = None,
    decorrelate: Optional[float] = None,
    friction: Optional[float] = None,
    seed: Optional[int] = None,
    platform: Union[None, str, openmm.Platform] = None,
    minimize: bool = True,
    description: Optional[str] = None,
    overwrite: bool = False,
    resume: bool = False,
    max_new_segments: Optional[int] = None,
    progress: bool = True,
) -> Path:
    """Run the reference protocol and write (or extend) the HDF5 file ``output``.

    Parameters
    ----------
    output : path of the HDF5 file to write
    system : a :class:`~openmm_flashmd.systems.BuiltinSystem`, an ``openmm.System``, the path
        of a serialized System XML, or a built-in name (``"water"``, ...). May be omitted
        when resuming (the System stored in the file is used).
    structure : starting structure: PDB/PDBx path, path of a serialized ``State`` XML, an
        ``openmm.State`` or positions ([N, 3], nm). Defaults to the built-in structure.
        Velocities in it are ignored (they are drawn at ``temperature``).
    temperature : K, of the thermalisation/decorrelation thermostat (default: the built-in
        system's temperature; required otherwise)
    timestep : velocity-Verlet (and Langevin) step, ps (default 0.0005)
    record_interval : ps between stored frames, a multiple of ``timestep`` (default 0.004)
    n_segments : number of NVE segments (default 10; when resuming, more than stored
        extends the file)
    segment_length : ps per segment, a multiple of ``record_interval`` (default 0.5)
    thermalize : ps of Langevin dynamics before the first segment (default 10)
    decorrelate : ps of Langevin dynamics between segments (default 1)
    friction : Langevin friction, 1/ps (default 1)
    seed : master random seed (default 0)
    platform : OpenMM platform name or object; None lets OpenMM choose
    minimize : minimise the energy before thermalising (fresh runs only)
    description : text describing the potential (default: from the built-in system or a
        summary of the System's forces)
    overwrite : replace an existing ``output``
    resume : continue an existing ``output`` at its first unfinished segment. Parameters
        left as None take the file's values; given ones must match. If ``output`` does not
        exist a fresh run starts.
    max_new_segments : stop after this many segments in this call (for chunked jobs)
    progress : show a tqdm progress bar with ETA

    Returns the path of the file. Raises :class:`FileExistsError` for an existing output
    without ``overwrite``/``resume``, :class:`SimulationError` on non-finite values, and
    :class:`~openmm_flashmd.data.schema.TrajectoryFormatError` when resuming a file that is
    not a valid trajectory file.
    """
    output = Path(output)
    if overwrite and resume:
        raise ValueError("pass either overwrite=True or resume=True, not both")
    output.parent.mkdir(parents=True, exist_ok=True)
    with OutputLock(output.parent, f".{output.name}.lock"):  # a second process on this file is refused
        if output.exists() and not (overwrite or resume):
            raise FileExistsError(f"{output} exists; pass overwrite=True to replace it or resume=True to continue it")
        platform_obj = make_platform(platform)
        given = dict(timestep=timestep, record_interval=record_interval, segment_length=segment_length,
                     thermalize=thermalize, decorrelate=decorrelate, friction=friction, seed=seed,
                     temperature=temperature)

        if resume and output.exists():
            handle = schema.open_trajectory_file(output, "r+")
            try:
                return _run(handle, output, system, given, n_segments, platform_obj, max_new_segments, progress)
            finally:
                handle.close()

        # ------------------------------------------------------------------ fresh run
        omm_system, built = load_system(system) if system is not None else (None, None)
        if omm_system is None:
            if resume:
                raise FileNotFoundError(f"cannot resume: {output} does not exist (the run stopped before creating it); "
                                        "start again with the first command (with --system)")
            raise ValueError("a system is required for a fresh run")
        n = omm_system.getNumParticles()
        positions, box, topology = start_state(omm_system, built, structure)
        if temperature is None:
            if built is None:
                raise ValueError("temperature is required unless the system is a built-in one")
            temperature = built.temperature
        params = {k: (v if v is not None else _DEFAULTS.get(k)) for k, v in given.items()}
        params["temperature"] = float(temperature)
        n_segments = 10 if n_segments is None else int(n_segments)
        if n_segments < 1:
            raise ValueError("n_segments must be positive")
        for key in ("timestep", "record_interval", "segment_length", "temperature"):
            if not params[key] > 0:
                raise ValueError(f"{key} must be positive")
        _ratio(params["record_interval"], params["timestep"], "record_interval / timestep")
        frames = _ratio(params["segment_length"], params["record_interval"], "segment_length / record_interval") + 1

        periodic = omm_system.usesPeriodicBoundaryConditions()
        if box is None:
            box = np.array([[c.value_in_unit(unit.nanometer) for c in v]
                            for v in omm_system.getDefaultPeriodicBoxVectors()])
        masses = system_masses(omm_system)
        atomic_numbers = np.array([a.element.atomic_number if a.element is not None else 0 for a in topology.atoms()],
                                  dtype=np.int64)
        constraints = np.array(
            [[*omm_system.getConstraintParameters(i)[:2],
              omm_system.getConstraintParameters(i)[2].value_in_unit(unit.nanometer)]
             for i in range(omm_system.getNumConstraints())], dtype=float).reshape(-1, 3)
        if description is None:
            description = built.description if built else _describe_system(omm_system)

        # Minimise and thermalise.
        integ = openmm.LangevinMiddleIntegrator(params["temperature"], params["friction"], params["timestep"])
        integ.setRandomNumberSeed(_derived_seed(params["seed"], 0))
        integ.setConstraintTolerance(1e-8)
        ctx = _context(omm_system, integ, platform_obj)
        try:
            if periodic:
                ctx.setPeriodicBoxVectors(*box)
            ctx.setPositions(positions)
            ctx.applyConstraints(1e-8)
            if minimize:
                openmm.LocalEnergyMinimizer.minimize(ctx, 1.0, 0)
            ctx.setVelocitiesToTemperature(params["temperature"], _derived_seed(params["seed"], 1))
            start_xml = openmm.XmlSerializer.serialize(ctx.getState(getPositions=True, getVelocities=True))
            platform_name = ctx.getPlatform().getName()
        except openmm.OpenMMException as err:
            raise SimulationError(f"OpenMM failed while preparing the system: {err}") from err
        finally:
            del ctx
        if params["thermalize"] > 0:
            state = _langevin(omm_system, platform_obj, start_xml, params["temperature"], params["friction"],
                              params["timestep"], params["thermalize"], _derived_seed(params["seed"], 0))
            start_xml = openmm.XmlSerializer.serialize(state)

        if output.exists():
            output.unlink()
        output.parent.mkdir(parents=True, exist_ok=True)
        tmp = output.with_name(output.name + ".partial")
        with h5py.File(tmp, "w") as f:
            attrs = dict(
                format=schema.FORMAT_NAME, format_version=schema.FORMAT_VERSION,
                frames_per_segment=frames, n_segments=n_segments, periodic=bool(periodic),
                constraints_active=bool(len(constraints) > 0), description=description,
                system_name=built.name if built else "custom", platform=platform_name,
                package_versions=json.dumps(schema.package_versions()),
                created=datetime.datetime.now().isoformat(timespec="seconds"),
                **{k: params[k] for k in ("timestep", "record_interval", "segment_length", "temperature", "friction",
                                           "thermalize", "decorrelate", "seed")},
            )
            if built is not None and built.options:
                attrs["system_options"] = json.dumps(built.options)
            for key, value in attrs.items():
                f.attrs[key] = value
            for name, tail in (("positions", (n, 3)), ("velocities", (n, 3)), ("forces", (n, 3)),
                               ("potential_energy", ()), ("box", (3, 3))):
                f.create_dataset(name, shape=(n_segments, frames) + tail, maxshape=(None, frames) + tail,
                                 chunks=(1, frames) + tail, dtype="f8", fillvalue=np.nan)
            f.create_dataset("segment_complete", shape=(n_segments,), maxshape=(None,), dtype="u1", fillvalue=0)
            f.create_dataset("masses", data=masses)
            f.create_dataset("atomic_numbers", data=atomic_numbers)
            f.create_dataset("constraints", data=constraints)
            str_dt = h5py.string_dtype()
            f.create_dataset("topology_pdb", data=_pdb_text(topology, positions), dtype=str_dt)
            f.create_dataset("system_xml", data=openmm.XmlSerializer.serialize(omm_system), dtype=str_dt)
            f.create_dataset("resume_state", data=start_xml, dtype=str_dt).attrs["segment"] = 0
        os.replace(tmp, output)
        handle = schema.open_trajectory_file(output, "r+")
        try:
            return _run(handle, output, omm_system, {}, None, platform_obj, max_new_segments, progress)
        finally:
            handle.close()


def _finish_interrupted_segment(handle: h5py.File, complete: np.ndarray) -> None:
    """A run killed after it stored a segment's data and the state that starts the next one,
    but before it flagged the segment done: flag it (its data are complete), so that the
    segment is not run again from the wrong start state."""
    tagged = schema.string_attribute(handle, "resume_state", "segment")
    if tagged is None:
        return
    done = int(tagged) - 1
    if 0 <= done < len(complete) and not complete[done]:
        handle["segment_complete"][done] = 1
        complete[done] = 1
        handle.flush()


def _run(handle: h5py.File, output: Path, system: Any, given: Dict[str, Any], n_segments: Optional[int],
         platform, max_new_segments: Optional[int], progress: bool) -> Path:
    attrs = schema.read_attrs(handle)
    for key, value in given.items():
        if value is None:
            continue
        stored = attrs.get(key)
        if stored is None or not math.isclose(float(value), float(stored), rel_tol=1e-9, abs_tol=0.0):
            raise ValueError(f"cannot resume {output}: {key}={value} differs from the file's {stored}")
    stored_system = openmm.XmlSerializer.deserialize(schema.read_string(handle, "system_xml"))
    if system is None or isinstance(system, openmm.System):
        omm_system = system if system is not None else stored_system
    else:
        omm_system, _ = load_system(system)
    masses = handle["masses"][()]
    n = len(masses)
    if omm_system.getNumParticles() != n or not np.allclose(system_masses(omm_system), masses):
        raise ValueError(f"cannot resume {output}: the System's particles differ from the file's")

    stored_segments = int(attrs["n_segments"])
    if n_segments is not None and int(n_segments) != stored_segments:
        if int(n_segments) < stored_segments:
            raise ValueError(f"cannot shrink {output} from {stored_segments} to {n_segments} segments")
        for name in schema.PER_FRAME_DATASETS + ("segment_complete",):
            handle[name].resize(int(n_segments), axis=0)
        handle.attrs["n_segments"] = int(n_segments)
        stored_segments = int(n_segments)

    timestep = float(attrs["timestep"])
    steps_per_record = _ratio(float(attrs["record_interval"]), timestep, "record_interval / timestep")
    frames = int(attrs["frames_per_segment"])
    temperature, friction = float(attrs["temperature"]), float(attrs["friction"])
    decorrelate, seed = float(attrs["decorrelate"]), int(attrs["seed"])
    periodic = bool(attrs["periodic"])
    constrained = omm_system.getNumConstraints() > 0
    complete = handle["segment_complete"][()]
    _finish_interrupted_segment(handle, complete)
    todo = [s for s in range(stored_segments) if not complete[s]]
    if max_new_segments is not None:
        todo = todo[: max(0, int(max_new_segments))]
    if not todo:
        return output

    from tqdm.auto import tqdm

    bar = tqdm(total=stored_segments, initial=int(complete.sum()), unit="segment", disable=not progress,
               desc=f"generate {output.name}")
    integ = velocity_verlet_integrator(timestep)
    ctx = _context(omm_system, integ, platform)
    try:
        for s in todo:
            if s > 0 and not complete[s - 1]:
                raise RuntimeError(f"segment {s - 1} of {output} is unfinished; segments must be run in order")
            ctx.setState(openmm.XmlSerializer.deserialize(schema.read_string(handle, "resume_state")))
            ctx.setTime(0.0)
            if constrained:  # frame 0 must satisfy position and velocity constraints exactly
                ctx.applyConstraints(1e-10)
                ctx.applyVelocityConstraints(1e-10)
            pos = np.empty((frames, n, 3))
            vel = np.empty((frames, n, 3))
            frc = np.empty((frames, n, 3))
            pot = np.empty(frames)
            box = np.zeros((frames, 3, 3))
            for k in range(frames):
                if k > 0:
                    try:
                        integ.step(steps_per_record)
                    except openmm.OpenMMException as err:
                        raise SimulationError(f"OpenMM failed in segment {s} frame {k}: {err}") from err
                st = ctx.getState(getPositions=True, getVelocities=True, getForces=True, getEnergy=True)
                pos[k] = st.getPositions(asNumpy=True).value_in_unit(unit.nanometer)
                vel[k] = st.getVelocities(asNumpy=True).value_in_unit(unit.nanometer / unit.picosecond)
                frc[k] = st.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer)
                pot[k] = st.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
                if periodic:
                    box[k] = st.getPeriodicBoxVectors(asNumpy=True).value_in_unit(unit.nanometer)
                _check_finite({"positions": pos[k], "velocities": vel[k], "forces": frc[k], "energy": pot[k]},
                              f"in segment {s} frame {k}")
                bar.set_postfix_str(f"seg {s} frame {k + 1}/{frames}", refresh=False)
            end_xml = openmm.XmlSerializer.serialize(ctx.getState(getPositions=True, getVelocities=True))
            if decorrelate > 0:
                end_xml = openmm.XmlSerializer.serialize(
                    _langevin(omm_system, platform, end_xml, temperature, friction, timestep, decorrelate,
                              _derived_seed(seed, 2 + s)))
            # Order matters for a kill at any moment: the data, then the next start state tagged
            # with its segment (flushed by replace_string), then the flag that the segment is done.
            handle["positions"][s] = pos
            handle["velocities"][s] = vel
            handle["forces"][s] = frc
            handle["potential_energy"][s] = pot
            handle["box"][s] = box
            handle.flush()
            schema.replace_string(handle, "resume_state", end_xml, segment=s + 1)
            handle["segment_complete"][s] = 1
            complete[s] = 1
            handle.flush()
            bar.update(1)
    finally:
        bar.close()
        del ctx
    return output
