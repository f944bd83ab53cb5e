"""Stepping a Context and sampling it: start states, recorders, and a stepping loop that
turns a failed stride or an explosion into a result instead of an exception.

Units: positions nm, velocities nm/ps, box nm, time ps, temperature K, energy kJ/mol.
"""

from __future__ import annotations

import math
import time
from typing import Any, Dict, List, Optional

import numpy as np

#: A run whose kinetic temperature, averaged over the last ``EXPLOSION_WINDOW_PS``, exceeds this
#: multiple of the target has exploded: it is stopped and reported as failed at that time.
EXPLOSION_FACTOR = 2.0
#: The window (ps) of that average. Single samples of a small molecule pass twice the target in
#: reference MD: alanine dipeptide (22 atoms, kinetic T fluctuations of 58 K at 300 K) reached
#: 722 K in 500 ps of reference Langevin MD (benchmarks/results/fallback_thresholds.json) and
#: was back near 300 K within 0.5 ps; a run that is flying apart stays hot.
EXPLOSION_WINDOW_PS = 1.0


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
    box (nm), volume (nm^3), potential and kinetic energy (kJ/mol), max speed (nm/ps).

    ``molecules``: in a System of two or more molecules of several atoms (``Context.getMolecules()``,
    taken at the first sample: a solvent), also the translational and rotational temperature of
    those molecules (:func:`openmm_flashmd.analysis.thermo.molecule_temperatures`;
    ``centre_of_mass_removed``: the System has a ``CMMotionRemover``)."""

    def __init__(self, masses: np.ndarray, elements: List[str], dof: float, positions: bool = False,
                 energy: bool = False, energy_groups=None, volume: bool = False,
                 explosion_K: Optional[float] = None, explosion_window_ps: float = EXPLOSION_WINDOW_PS,
                 molecules: bool = False, centre_of_mass_removed: bool = False):
        self.masses, self.elements, self.dof = masses, elements, dof
        self.want_molecules, self.centre_of_mass_removed = molecules, centre_of_mass_removed
        self.molecules: Optional[List[List[int]]] = None  # known at the first sample
        self.periodic = True
        self.by_motion: Dict[str, List[float]] = {"translation": [], "rotation": []}
        self.explosion_K, self.explosion_window_ps = explosion_K, explosion_window_ps
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
        from openmm_flashmd.analysis.molecules import solvent_molecules
        from openmm_flashmd.analysis.thermo import kinetic_temperature, molecule_temperatures, temperature_by_element

        if self.want_molecules and self.molecules is None:
            self.molecules = solvent_molecules(context)
            self.periodic = context.getSystem().usesPeriodicBoundaryConditions()
        kwargs: Dict[str, Any] = dict(getVelocities=True, getPositions=self.want_positions or bool(self.molecules),
                                      getEnergy=self.want_energy)
        if self.want_energy and self.energy_groups is not None:
            kwargs["groups"] = set(self.energy_groups)
        state = context.getState(**kwargs)
        v = np.asarray(state.getVelocities(asNumpy=True)._value, dtype=float)
        self.time.append(t)
        self.velocities_T.append(float(kinetic_temperature(v, self.masses, self.dof)))
        for element, values in temperature_by_element(v, self.masses, self.elements).items():
            self.by_element[element].append(float(values))
        self.max_speed = max(self.max_speed, float(np.sqrt((v * v).sum(1)).max()))
        if self.molecules:
            box = np.asarray(state.getPeriodicBoxVectors(asNumpy=True)._value, dtype=float) if self.periodic else None
            motion = molecule_temperatures(np.asarray(state.getPositions(asNumpy=True)._value, dtype=float), v,
                                           self.masses, self.molecules, box, self.centre_of_mass_removed)
            for key, values in self.by_motion.items():
                values.append(float(motion[key]))
        if self.want_positions:
            self.positions.append(np.asarray(state.getPositions(asNumpy=True)._value, dtype=np.float32))
            self.boxes.append(np.asarray(state.getPeriodicBoxVectors(asNumpy=True)._value, dtype=np.float32))
        if self.want_volume:
            self.volume.append(float(state.getPeriodicBoxVolume()._value))
        if self.want_energy:
            self.potential.append(float(state.getPotentialEnergy()._value))
            self.kinetic.append(float(state.getKineticEnergy()._value))

    def exploded(self) -> Optional[str]:
        """Why the run has exploded by its last sample, else None: a non-finite kinetic
        temperature, or a mean kinetic temperature above ``explosion_K`` over the samples of the
        last ``explosion_window_ps`` (the last sample included)."""
        if self.explosion_K is None or not self.velocities_T:
            return None
        last = self.velocities_T[-1]
        if not math.isfinite(last):
            return f"exploded: kinetic temperature {last}"
        recent = [T for t, T in zip(self.time, self.velocities_T) if t >= self.time[-1] - self.explosion_window_ps]
        mean = float(np.mean(recent))
        if mean <= self.explosion_K:
            return None
        return (f"exploded: kinetic temperature {mean:.0f} K > {self.explosion_K:.0f} K "
                f"(mean over the last {self.explosion_window_ps:g} ps)")

    def temperatures(self) -> Dict[str, np.ndarray]:
        out = {"all": np.asarray(self.velocities_T)}
        out.update({e: np.asarray(v) for e, v in self.by_element.items()})
        return out

    def molecule_temperatures(self) -> Dict[str, np.ndarray]:
        """The molecules' ``translation`` and ``rotation`` temperatures (K) per sample; empty
        unless the recorder was asked for them and the System has several molecules."""
        return {k: np.asarray(v) for k, v in self.by_motion.items()} if self.molecules else {}

    def snapshot(self) -> Dict[str, np.ndarray]:
        """The samples so far as float64 arrays (times, temperatures, max speed), for
        :meth:`restore`; a recorder of positions, volumes or energies has more than this."""
        if self.want_positions or self.want_volume or self.want_energy:
            raise ValueError("only a recorder of temperatures can be snapshot")
        out = {"time": np.asarray(self.time, dtype=float), "T_all": np.asarray(self.velocities_T, dtype=float),
               "max_speed": np.asarray(self.max_speed, dtype=float)}
        out.update({f"T_{e}": np.asarray(v, dtype=float) for e, v in self.by_element.items()})
        if self.molecules:
            out["molecules"] = np.concatenate([np.asarray(a, dtype=float) for a in self.molecules])
            out["molecule_sizes"] = np.asarray([len(a) for a in self.molecules], dtype=float)
            out["periodic"] = np.asarray(float(self.periodic))
            out.update({f"Tmol_{k}": np.asarray(v, dtype=float) for k, v in self.by_motion.items()})
        return out

    def restore(self, snapshot: Dict[str, np.ndarray]) -> None:
        """Continue from a :meth:`snapshot` of a recorder of the same System (bit for bit)."""
        self.time = [float(t) for t in snapshot["time"]]
        self.velocities_T = [float(T) for T in snapshot["T_all"]]
        self.by_element = {e: [float(T) for T in snapshot[f"T_{e}"]] for e in self.by_element}
        self.max_speed = float(snapshot["max_speed"])
        if "molecules" in snapshot:
            ends = np.cumsum(snapshot["molecule_sizes"].astype(int))
            self.molecules = [a.astype(int).tolist() for a in np.split(snapshot["molecules"], ends[:-1])]
            self.periodic = bool(snapshot["periodic"])
            self.by_motion = {k: [float(T) for T in snapshot[f"Tmol_{k}"]] for k in self.by_motion}
        else:  # a snapshot without them (or from before they were recorded): none in this run either
            self.molecules = []


def advance(context, integrator, dt: float, duration: float, interval: int, desc: str,
            recorder: Optional[Recorder] = None, t0: float = 0.0, progress: bool = True) -> Dict[str, Any]:
    """Step ``duration`` ps (rounded to whole steps of ``dt`` ps) in chunks of ``interval``
    steps, sampling with ``recorder`` after each chunk; ``t0`` (ps) is the simulated time
    since the Context was made, so sample times count from there.

    Returns wall seconds spent in ``step`` (``wall_s``), simulated ps done (``done_ps``),
    and, if a FlashMD stride failed, ``failed_at_ps`` (the end time of the failed stride
    since the Context was made: ``FlashMDError`` names the stride by its running count) and
    ``error``. A run whose ``recorder`` reports an explosion stops there and counts as failed.
    ``progress``: a tqdm progress bar.
    """
    import openmm
    from tqdm.auto import tqdm

    from openmm_flashmd import FlashMDError

    total = max(1, int(round(duration / dt))) if duration > 0 else 0
    done, wall = 0, 0.0
    result: Dict[str, Any] = {"failed_at_ps": None, "error": None}
    with tqdm(total=total, desc=desc, unit="step", disable=not progress, leave=False, mininterval=2.0) as bar:
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
