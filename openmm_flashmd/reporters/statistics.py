"""A Simulation reporter for what FlashMD users watch: temperatures, the energy filter, the stride monitor."""

from __future__ import annotations

import os
from typing import IO, List, Optional, Union

import numpy as np
from openmm import unit

from openmm_flashmd.analysis.molecules import solvent_molecules
from openmm_flashmd.analysis.thermo import (
    degrees_of_freedom,
    density,
    kinetic_temperature,
    molecule_temperatures,
    removes_centre_of_mass_motion,
    system_masses,
    temperature_by_element,
)
from openmm_flashmd.integrator.fallback import REJECTION_REASONS


class FlashMDReporter:
    """CSV rows of step, time (ps), potential and total energy (kJ/mol), density (g/cm³,
    periodic systems only), kinetic temperature (K) overall and per element, in a System of
    several molecules of more than one atom (a solvent) the molecules' translational and
    rotational temperatures (K, :func:`openmm_flashmd.analysis.thermo.molecule_temperatures`),
    the energy filter's statistics since the previous row (strides filtered, clamped, mean
    scale) and the stride monitor's (strides monitored, rejected and integrated with MD
    instead, rejections per reason; see
    :mod:`openmm_flashmd.integrator.fallback`).

    The overall temperature counts 3N - constraints (- 3 with a ``CMMotionRemover``)
    degrees of freedom, like OpenMM's ``StateDataReporter``; per-element temperatures count
    3 per atom, so with constraints (rigid water) they differ from T even at equilibrium.

    Parameters
    ----------
    file : path or open text file
    report_interval : steps (strides) between rows
    overwrite : replace an existing file (a path is never silently overwritten)
    append : add rows to an existing file (resuming a run); no new header, and the columns
        of the file's header (a log written before the molecules' columns existed keeps without them)
    """

    def __init__(
        self,
        file: Union[str, os.PathLike, IO[str]],
        report_interval: int,
        overwrite: bool = False,
        append: bool = False,
    ):
        self._write_header = not append
        self._header: Optional[List[str]] = None  # an appended file's columns
        if isinstance(file, (str, os.PathLike)):
            if append and os.path.exists(file):
                with open(file) as existing:
                    self._header = existing.readline().strip().split(",")
            if os.path.exists(file) and not (overwrite or append):
                raise FileExistsError(f"{file} exists; pass overwrite=True to replace it or append=True")
            self._out: IO[str] = open(file, "a" if append else "w")
            self._own = True
        else:
            self._out, self._own = file, False
        self._interval = int(report_interval)
        self._elements: Optional[List[str]] = None
        self._masses: Optional[np.ndarray] = None
        self._molecules: Optional[List[List[int]]] = None

    def describeNextReport(self, simulation):
        if self._molecules is None:  # an appended log without the molecules' columns goes on without them
            old_log = self._header is not None and "temperature_translation_K" not in self._header
            self._molecules = [] if old_log else solvent_molecules(simulation.context)
        steps = self._interval - simulation.currentStep % self._interval
        include = ["velocities", "energy"] + (["positions"] if self._molecules else [])
        return {"steps": steps, "periodic": None, "include": include}

    def _start(self, simulation) -> None:
        system = simulation.system
        self._masses = system_masses(system)
        self._elements = [a.element.symbol if a.element is not None else "X" for a in simulation.topology.atoms()]
        self._dof = degrees_of_freedom(system)
        self._periodic = system.usesPeriodicBoundaryConditions()
        columns = ["step", "time_ps", "potential_kjmol", "total_kjmol"]
        columns += ["density_g_cm3"] if self._periodic else []
        columns += ["temperature_K"]
        columns += [f"temperature_{e}_K" for e in sorted(set(self._elements))]
        columns += ["temperature_translation_K", "temperature_rotation_K"] if self._molecules else []
        self._com_removed = removes_centre_of_mass_motion(system)
        columns += ["filter_strides", "filter_clamped", "filter_scale_mean", "monitor_strides", "rejected_strides"]
        columns += [f"rejected_{reason}" for reason in REJECTION_REASONS.values()]
        if self._write_header:
            print(",".join(columns), file=self._out)

    def report(self, simulation, state) -> None:
        if self._elements is None:
            self._start(simulation)
        v = state.getVelocities(asNumpy=True).value_in_unit(unit.nanometer / unit.picosecond)
        by_element = temperature_by_element(v, self._masses, self._elements)
        everyone = float(kinetic_temperature(v, self._masses, self._dof))
        motion = []
        if self._molecules:
            box = state.getPeriodicBoxVectors(asNumpy=True).value_in_unit(unit.nanometer) if self._periodic else None
            temps = molecule_temperatures(state.getPositions(asNumpy=True).value_in_unit(unit.nanometer), v,
                                          self._masses, self._molecules, box, self._com_removed)
            motion = [float(temps["translation"]), float(temps["rotation"])]
        potential = state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
        kinetic = state.getKineticEnergy().value_in_unit(unit.kilojoule_per_mole)
        integrator = simulation.integrator
        stats = integrator.filter_statistics if hasattr(integrator, "filter_statistics") else None
        monitor = integrator.fallback_statistics if hasattr(integrator, "fallback_statistics") else None
        row = [
            simulation.currentStep,
            state.getTime().value_in_unit(unit.picosecond),
            potential,
            potential + kinetic,
            *([float(density(self._masses.sum(), state.getPeriodicBoxVolume().value_in_unit(unit.nanometer**3)))]
              if self._periodic else []),
            everyone,
            *[float(by_element[e]) for e in sorted(by_element)],
            *motion,
            stats["count"] if stats else 0,
            stats["clamped"] if stats else 0,
            stats["mean"] if stats else float("nan"),
            monitor["strides"] if monitor else 0,
            monitor["rejected"] if monitor else 0,
            *[monitor["by_reason"][reason] if monitor else 0 for reason in REJECTION_REASONS.values()],
        ]
        print(",".join(f"{x:.6g}" if isinstance(x, float) else str(x) for x in row), file=self._out, flush=True)
        if stats:
            integrator.reset_filter_statistics()
        if monitor:
            integrator.reset_fallback_statistics()

    def __del__(self):
        if getattr(self, "_own", False):
            self._out.close()
