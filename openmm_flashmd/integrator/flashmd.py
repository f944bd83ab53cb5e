"""FlashMDIntegrator: one learned stride per OpenMM step, on the platform itself."""

from __future__ import annotations

from typing import Dict, Iterable, Optional, Tuple

import numpy as np
import openmm
import torch
from openmm import unit

from openmm_flashmd._plugins import global_parameter_names, quiet_import
from openmm_flashmd.analysis.thermo import degrees_of_freedom, system_masses
from openmm_flashmd.integrator.adapter import (
    FAILURE_REASONS,
    FAILURE_SENTINEL,
    STEP_SIZE_MISMATCH,
    STRIDE_FORCE_NAME,
    VELOCITY_PROBE_TIME,
    StrideAdapter,
    build_stride_force,
)
from openmm_flashmd.integrator.compatibility import atomic_numbers_for, check_model_fits_system, check_model_outputs
from openmm_flashmd.integrator.fallback import (
    DEFAULT_FALLBACK_TIMESTEP,
    DEFAULT_MAX_ENERGY_DRIFT,
    DEFAULT_MAX_TEMPERATURE_RATIO,
    REJECTION_REASONS,
    add_decision_and_fallback,
    add_energy_anchor,
    add_finiteness_check,
    add_monitor_variables,
    add_save_state,
    fallback_substeps,
)
from openmm_flashmd.integrator.guess import (
    GUESS_VARIABLE,
    GUESS_VELOCITY_VARIABLE,
    VELOCITY_VARIABLE,
    add_guess_variables,
    add_verlet_guess,
    guess_fast_forces,
    highest_free_group,
    model_uses_guess,
    separate_fast_forces,
)
from openmm_flashmd.integrator.splitting import THERMOSTAT_LETTERS, SplittingError, default_splitting, parse_splitting
from openmm_flashmd.integrator.settle import settle_clusters
from openmm_flashmd.messages import error_line
from openmm_flashmd.model.energy import ENERGY_ONLY_PARAMETER
from openmm_flashmd.model.protocol import ModelLike, load_model, read_metadata

ThermostatedIntegrator = quiet_import("openmmtools.integrators").ThermostatedIntegrator


class FlashMDError(RuntimeError):
    """A FlashMD stride failed (NaN, exploding stride); the message names the stride.

    ``stride`` is the failed stride's number (counted from 1 over the integrator's life).
    """

    def __init__(self, message: str, stride: int = 0):
        super().__init__(message)
        self.stride = stride


def _in(value, unit_, name):
    """A float in ``unit_`` from a Quantity or a plain number (taken to be in ``unit_``)."""
    if value is None:
        return None
    if unit.is_quantity(value):
        if not value.unit.is_compatible(unit_):
            raise TypeError(f"{name} has units {value.unit}, expected something compatible with {unit_}")
        return value.value_in_unit(unit_)
    return float(value)


_SPLITTING_LETTERS = "FEOB"


def _splitting_code(letters) -> float:
    """A splitting as one number (base-5 digits 1-4 for F, E, O, B), for a global variable."""
    code = 0
    for letter in letters:
        code = 5 * code + _SPLITTING_LETTERS.index(letter) + 1
    return float(code)


def _splitting_from_code(code: float) -> str:
    letters, code = [], int(round(code))
    while code:
        code, digit = divmod(code, 5)
        letters.append(_SPLITTING_LETTERS[digit - 1])
    return " ".join(reversed(letters))


def _force_groups(system: openmm.System) -> set:
    """The force groups that hold at least one of the System's forces."""
    return {system.getForce(i).getForceGroup() for i in range(system.getNumForces())}


def _declares_energy_only(system: openmm.System) -> bool:
    """Whether a force of ``system`` declares :data:`ENERGY_ONLY_PARAMETER` (see
    :mod:`openmm_flashmd.model.energy`): its energy-only evaluations can then skip autograd."""
    return any(ENERGY_ONLY_PARAMETER in global_parameter_names(force) for force in system.getForces())


class FlashMDIntegrator(ThermostatedIntegrator):
    """OpenMM integrator whose step is one FlashMD stride of a learned model.

    The constructor adds a ``TorchForce`` carrying the stride model to ``system``
    (in a reserved force group, zero energy), so build the integrator *before*
    the Context or Simulation. One ``step`` advances the system by the model's
    stride; ``getStepSize()`` is that stride, so simulation time, reporters and
    checkpoints stay right. A model declaring the ``verlet_guess`` input gets the
    frozen-force Verlet guess of each stride (:mod:`openmm_flashmd.integrator.guess`),
    computed here from the forces of ``energy_force_groups``; when its metadata names
    ``guess_fast_forces``, the System's forces of those classes move to a force group of
    their own (same total energy and forces), recomputed at every substep of the guess.

    Parameters
    ----------
    system : openmm.System
        The system to simulate; the stride force is added to it.
    model : TorchScript module, path, or bundled model name
        A stride model (see :mod:`openmm_flashmd.model.protocol`).
    temperature : temperature Quantity or float (K), optional
        Heat-bath temperature; ``None`` for NVE.
    collision_rate : 1/time Quantity or float (1/ps)
        Friction of the O (Langevin) letter, inverse time constant of B (Bussi).
    splitting : str, optional
        Letters F, E, O, B (see :mod:`openmm_flashmd.integrator.splitting`);
        default ``"O F E O"`` with a temperature, ``"F E"`` without.
    energy_force_groups : iterable of int, optional
        Force groups whose potential the energy filter E uses (e.g. the group of a
        TorchForce MLIP), and whose forces the Verlet guess uses; default all groups
        except the stride force's.
    random_rotation : bool
        Rotate (properly or improperly) positions, velocities and cell by a random
        orthogonal matrix around every stride; turn off for models of systems in
        external fields.
    random_seed : int, optional
        Seed of the integrator's random numbers (thermostat noise and rotations).
    topology : openmm.app.Topology, optional
        Elements of the particles; without it they are inferred from masses.
    timestep : time Quantity or float (ps), optional
        If given, must equal the model's stride (a guard for scripts).
    filter_scale_bounds : (float, float)
        The energy filter clamps its velocity scale factor to this band and counts
        every clamp (see :attr:`filter_statistics`).
    max_displacement : length Quantity or float (nm), or None
        A stride moving any particle further fails (see ``fallback``); ``None`` turns
        the check off.
    fallback : bool
        Monitor every stride (:mod:`openmm_flashmd.integrator.fallback`): a failed stride,
        one whose energy-filter scale leaves ``filter_scale_bounds``, one that heats a
        thermostatted system past ``max_temperature_ratio`` or one that takes an NVE run's
        total energy more than ``max_energy_drift`` from where it started is rejected and
        integrated again with velocity Verlet substeps on the System's own forces, on the
        platform (:attr:`fallback_statistics` counts them). ``False``: a failed stride
        raises :class:`FlashMDError` and an out-of-band filter scale is clamped.
    fallback_timestep : time Quantity or float (ps), optional
        Longest substep of the fallback MD; default the model's reference-data timestep
        (metadata ``provenance.data_timestep``), else 0.5 fs. Rounded down so that whole
        substeps make one stride.
    max_temperature_ratio : float
        Thermostatted splittings: the monitor rejects a stride after which the kinetic
        temperature exceeds this multiple of the bath temperature.
    max_energy_drift : float
        NVE splittings: the monitor rejects a stride after which the total energy differs
        from the run's starting total energy by more than this fraction of the starting
        kinetic energy.
    """

    def __init__(
        self,
        system: openmm.System,
        model: ModelLike,
        temperature=None,
        collision_rate=1.0 / unit.picosecond,
        splitting: Optional[str] = None,
        energy_force_groups: Optional[Iterable[int]] = None,
        random_rotation: bool = True,
        random_seed: Optional[int] = None,
        topology: Optional[openmm.app.Topology] = None,
        timestep=None,
        filter_scale_bounds: Tuple[float, float] = (0.8, 1.25),
        max_displacement=0.5 * unit.nanometer,
        fallback: bool = True,
        fallback_timestep=None,
        max_temperature_ratio: float = DEFAULT_MAX_TEMPERATURE_RATIO,
        max_energy_drift: float = DEFAULT_MAX_ENERGY_DRIFT,
    ):
        scripted = load_model(model)
        metadata = read_metadata(scripted)
        stride = float(metadata["stride"])
        kelvin = _in(temperature, unit.kelvin, "temperature")
        gamma = _in(collision_rate, unit.picosecond**-1, "collision_rate")
        letters = parse_splitting(splitting if splitting is not None else default_splitting(kelvin is not None))
        thermostats = THERMOSTAT_LETTERS & set(letters)
        if kelvin is None and thermostats:
            raise SplittingError(f"splitting {''.join(letters)!r} has a thermostat but temperature is None")
        if kelvin is not None and not thermostats:
            raise SplittingError(
                f"temperature given but splitting {''.join(letters)!r} has no thermostat letter (O or B); "
                "pass temperature=None for NVE"
            )
        lo, hi = (float(b) for b in filter_scale_bounds)
        if not 0.0 < lo <= 1.0 <= hi:
            raise ValueError(f"filter_scale_bounds must satisfy 0 < low <= 1 <= high, got {filter_scale_bounds}")
        if any(system.getForce(i).getName() == STRIDE_FORCE_NAME for i in range(system.getNumForces())):
            raise ValueError(
                "this System already carries a FlashMD stride force (another FlashMDIntegrator was built on it); "
                "build each integrator on its own copy of the System (copy.deepcopy(system))"
            )

        atomic_numbers = atomic_numbers_for(system, metadata, topology)
        check_model_fits_system(system, metadata, atomic_numbers, _in(timestep, unit.picosecond, "timestep"))

        fast_group = None
        if model_uses_guess(metadata):  # before the stride group is chosen: the fast forces may take a group
            fast_group = separate_fast_forces(system, guess_fast_forces(metadata), None if energy_force_groups is None
                                              else [int(g) for g in energy_force_groups])
            if energy_force_groups is not None and fast_group is not None:
                energy_force_groups = [*energy_force_groups, fast_group]
        populated = _force_groups(system)
        group = highest_free_group(populated, "FlashMD needs one free group for its stride force")
        all_groups = set(range(32)) - {group}
        energy_groups = set(all_groups if energy_force_groups is None else (int(g) for g in energy_force_groups))
        if not energy_groups <= all_groups:
            raise ValueError(f"energy_force_groups must be in 0..31 and exclude the stride group {group}: {energy_groups}")
        if not energy_groups:
            raise ValueError("energy_force_groups is empty; name the force groups of the potential energy")
        if energy_force_groups is not None and not energy_groups <= populated:
            raise ValueError(f"energy_force_groups {sorted(energy_groups - populated)} hold no force of this System "
                             f"(groups with forces: {sorted(populated)}); the filter would conserve kinetic energy only")

        settle_atoms, settle_distances = settle_clusters(system)
        adapter = StrideAdapter(
            scripted,
            torch.tensor(system_masses(system), dtype=torch.float64),
            torch.tensor(atomic_numbers, dtype=torch.int64),
            periodic=system.usesPeriodicBoundaryConditions(),
            random_rotation=random_rotation,
            max_displacement=_in(max_displacement, unit.nanometer, "max_displacement") or 0.0,
            uses_guess=model_uses_guess(metadata),
            settle_atoms=torch.from_numpy(settle_atoms),
            settle_distances=torch.from_numpy(settle_distances),
        )
        check_model_outputs(scripted, system, adapter.masses, adapter.atomic_numbers, adapter.uses_guess)
        system.addForce(build_stride_force(adapter, group))

        if kelvin is not None:
            super().__init__(kelvin * unit.kelvin, stride * unit.picosecond)
        else:  # NVE: no kT, so openmmtools does not take it for a thermostat
            super(ThermostatedIntegrator, self).__init__(stride * unit.picosecond)
        self.model_metadata: Dict = metadata
        self.setIntegrationForceGroups(all_groups)
        if random_seed is not None:
            self.setRandomNumberSeed(int(random_seed))

        # potential and forces of the energy groups, one CustomIntegrator term per group (OpenMM
        # refuses a step that depends on several groups, so sums take one step per term)
        self._energy_terms, self._force_terms = (
            [name] if energy_groups == all_groups else [f"{name}{g}" for g in sorted(energy_groups)]
            for name in ("energy", "f")
        )
        self._energy_only = _declares_energy_only(system)
        self._uses_guess = adapter.uses_guess
        self._fast_group = fast_group
        self._constrained = system.getNumConstraints() > 0
        self._counts = {letter: letters.count(letter) for letter in set(letters)}
        self._random_rotation = random_rotation
        timestep_ps = _in(fallback_timestep, unit.picosecond, "fallback_timestep")
        if timestep_ps is None:
            timestep_ps = float(metadata.get("provenance", {}).get("data_timestep") or DEFAULT_FALLBACK_TIMESTEP)
        if not (float(max_temperature_ratio) > 1.0 and float(max_energy_drift) > 0.0):
            raise ValueError(f"max_temperature_ratio must exceed 1 and max_energy_drift be positive, got "
                             f"{max_temperature_ratio} and {max_energy_drift}")
        self._max_kinetic_in_kT = (0.5 * degrees_of_freedom(system) * float(max_temperature_ratio)
                                   if thermostats else None)
        self._max_energy_drift = None if thermostats else float(max_energy_drift)
        # The configuration lives in global variables, so that copies through XML (openmmtools'
        # ContextCache, multistate storage files) keep it; the properties below read it.
        for name, value in [
            ("flashmd_model_stride", stride),
            ("flashmd_splitting_code", _splitting_code(letters)),
            ("flashmd_stride_group", group),
            ("flashmd_energy_group_mask", float(sum(1 << g for g in energy_groups))),
            # what flashmd_fail_code sums to per unit of failure code: the sentinel in all 3N slots
            ("flashmd_failure_unit", FAILURE_SENTINEL * 3 * system.getNumParticles()),
            ("flashmd_fallback", float(bool(fallback))),
            ("flashmd_fallback_substeps", fallback_substeps(stride, timestep_ps)),
        ]:
            self.addGlobalVariable(name, value)
        self._add_variables(gamma, lo, hi, system)
        self.addUpdateContextState()
        # a step size that is not the model's stride: do nothing, and report it (code 10)
        self.beginIfBlock(f"abs(dt - flashmd_model_stride) > {1e-12 * stride!r}")
        self.addComputeGlobal("flashmd_failed", "flashmd_step + 1")
        self.addComputeGlobal("flashmd_fail_code", f"{STEP_SIZE_MISMATCH * self._failure_unit!r}")
        self.endBlock()
        steps = {"F": self._add_stride, "E": self._add_energy_filter, "O": self._add_langevin, "B": self._add_bussi}
        stride_ends = "E" if "E" in letters else "F"  # the monitor decides after the stride and its filter
        for letter in letters:
            self.beginIfBlock("flashmd_failed = 0")  # after a failed stride the step does nothing more
            steps[letter]()
            if self.fallback and letter == stride_ends:
                self._add_monitor()
            self.endBlock()

    # ---------------------------------------------------------------- program
    def _add_variables(self, gamma: float, lo: float, hi: float, system: openmm.System) -> None:
        for name, value in [
            ("flashmd_gamma", gamma),
            ("flashmd_scale_lo", lo),
            ("flashmd_scale_hi", hi),
            ("flashmd_ke", 0.0),
            ("flashmd_h0", 0.0),
            ("flashmd_alpha2", 1.0),
            ("flashmd_alpha", 1.0),
            ("flashmd_inband", 1.0),
            ("flashmd_filter_count", 0.0),
            ("flashmd_filter_clamped", 0.0),
            ("flashmd_alpha_sum", 0.0),
            ("flashmd_alpha_min", 1e30),
            ("flashmd_alpha_max", -1e30),
            ("flashmd_failed", 0.0),
            ("flashmd_energy_after", 0.0),
            ("flashmd_energy_valid", 0.0),
            ("flashmd_xsum", 0.0),
            ("flashmd_xsum_after", 0.0),
            ("flashmd_fail_code", 0.0),
        ]:
            self.addGlobalVariable(name, value)
        self.addPerDofVariable("flashmd_dq", 0.0)
        self.addPerDofVariable("flashmd_vnew", 0.0)
        # Fixed random weights for a positions checksum (see _add_stride).
        weights = np.random.default_rng(12345).uniform(0.5, 1.5, size=(system.getNumParticles(), 3))
        self.addPerDofVariable("flashmd_weight", 0.0)
        self.setPerDofVariableByName("flashmd_weight", [openmm.Vec3(*row) for row in weights])
        self.addPerDofVariable("flashmd_sink", 0.0)
        if self._uses_guess:
            add_guess_variables(self)
        if self.fallback:
            add_monitor_variables(self)
        if "B" in self._counts:
            for name in ("flashmd_r1", "flashmd_chi2", "flashmd_c", "flashmd_kfac", "flashmd_bussi"):
                self.addGlobalVariable(name, 0.0)
            # chi-square with (dof - 1) degrees of freedom: a gaussian^2 sum over a mask
            mask = np.zeros(3 * system.getNumParticles())
            mask[: max(degrees_of_freedom(system) - 1, 0)] = 1.0
            self.addPerDofVariable("flashmd_mask", 0.0)
            self.setPerDofVariableByName("flashmd_mask", [openmm.Vec3(*row) for row in mask.reshape(-1, 3)])

    def _add_stride(self) -> None:
        g = self.stride_force_group
        s = VELOCITY_PROBE_TIME
        if self.fallback:
            add_save_state(self)
        if "E" in self._counts or self.fallback:  # parse_splitting puts E directly after the one F
            # H before the stride. The potential at these positions was usually computed by
            # the previous step's E; reuse it when the positions are bit-identical (a barostat
            # move changes them) and it was computed in this same step() call (Python-side
            # changes between calls, e.g. setParameter or a new box, always force a recompute).
            self.addComputeSum("flashmd_ke", "0.5*m*v*v")
            self.addComputeSum("flashmd_xsum", "flashmd_weight*x")
            self.addComputeGlobal(
                "flashmd_energy_valid", "flashmd_energy_valid*delta(flashmd_xsum - flashmd_xsum_after)"
            )
            self.beginIfBlock("flashmd_energy_valid = 1")
            self.addComputeGlobal("flashmd_h0", "flashmd_ke + flashmd_energy_after")
            self.endBlock()
            self.beginIfBlock("flashmd_energy_valid = 0")
            self._add_potential_energy("flashmd_h0", "flashmd_ke")
            self.endBlock()
            if self.fallback and self._max_energy_drift is not None:
                add_energy_anchor(self)
        if self._random_rotation:
            for k in range(1, 5):
                self.addComputeGlobal(f"flashmd_rot{k}", "uniform")
        self.addComputeGlobal("flashmd_step", "flashmd_step + 1")
        if self._uses_guess:
            # the guess from the forces at x (groups of the energy filter), handed over at x + g
            # (the positions the guess ends at) and x + s w, like the velocities below
            add_verlet_guess(self, self.getStepSize().value_in_unit(unit.picosecond),
                             int(self.model_metadata["guess_substeps"]), self._force_terms, self._constrained,
                             self._fast_group)
            self.addComputeGlobal("flashmd_stage", "4")
            self.addComputePerDof("flashmd_sink", f"f{g}")
            self.addComputePerDof("x", f"x - {GUESS_VARIABLE} + {s!r}*{GUESS_VELOCITY_VARIABLE}")
            self.addComputeGlobal("flashmd_stage", "5")
            self.addComputePerDof("flashmd_sink", f"f{g}")
            self.addComputePerDof("x", f"x - {s!r}*{GUESS_VELOCITY_VARIABLE}")
            self.addComputePerDof("v", VELOCITY_VARIABLE)
        self.addComputePerDof("x", f"x + {s!r}*v")
        self.addComputeGlobal("flashmd_stage", "1")
        self.addComputePerDof("flashmd_sink", f"f{g}")
        self.addComputePerDof("x", f"x - {s!r}*v")
        self.addComputeGlobal("flashmd_stage", "2")
        self.addComputePerDof("flashmd_dq", f"f{g}")
        self.addComputeGlobal("flashmd_stage", "3")
        self.addComputePerDof("flashmd_vnew", f"f{g}")
        self.addComputeGlobal("flashmd_stage", "0")
        # A failed stride returns code * FAILURE_SENTINEL in every slot: keep the state.
        self.addComputeSum("flashmd_fail_code", f"step(abs(flashmd_vnew) - {FAILURE_SENTINEL / 2!r})*abs(flashmd_vnew)")
        if not self.fallback:  # with the monitor, the decision comes after the filter (_add_monitor)
            self.beginIfBlock("flashmd_fail_code > 0")
            self.addComputeGlobal("flashmd_failed", "flashmd_step")
            self.endBlock()
        self.beginIfBlock("flashmd_fail_code = 0")
        self.addComputePerDof("v", "flashmd_vnew")
        self.addComputePerDof("x", "x + flashmd_dq")
        if self._constrained:
            self.addConstrainPositions()
            self.addConstrainVelocities()
        if self.fallback:
            add_finiteness_check(self, self._failure_unit)
        self.endBlock()

    def _add_potential_energy(self, target: str, plus: str = "0") -> None:
        """``target = plus + potential energy of the energy groups`` (kJ/mol), one step per group;
        with :data:`ENERGY_ONLY_PARAMETER` at 1 while they run when a force declares it."""
        first, *rest = self._energy_terms
        if self._energy_only:
            self.addComputeGlobal(ENERGY_ONLY_PARAMETER, "1")
        self.addComputeGlobal(target, f"{plus} + {first}")
        for term in rest:
            self.addComputeGlobal(target, f"{target} + {term}")
        if self._energy_only:
            self.addComputeGlobal(ENERGY_ONLY_PARAMETER, "0")

    def _add_energy_test(self) -> None:
        """The filter's squared scale factor (H - V')/K' after the stride, and whether it is in band."""
        self.addComputeSum("flashmd_ke", "0.5*m*v*v")
        self._add_potential_energy("flashmd_energy_after")
        self.addComputeSum("flashmd_xsum_after", "flashmd_weight*x")
        self.addComputeGlobal("flashmd_energy_valid", "1")
        self.addComputeGlobal("flashmd_alpha2", "select(flashmd_ke, (flashmd_h0 - flashmd_energy_after)/flashmd_ke, 1)")
        self.addComputeGlobal(
            "flashmd_inband", "step(flashmd_alpha2 - flashmd_scale_lo^2)*step(flashmd_scale_hi^2 - flashmd_alpha2)"
        )

    def _add_monitor(self) -> None:
        """Accept the stride, or restore the state before it and integrate it with MD."""
        if "E" not in self._counts:
            self.beginIfBlock("flashmd_fail_code = 0")
            self._add_energy_test()
            self.endBlock()
        add_decision_and_fallback(self, self._failure_unit,
                                  self.getStepSize().value_in_unit(unit.picosecond), self.fallback_substeps,
                                  self._constrained, self._max_kinetic_in_kT, self._max_energy_drift)

    def _add_energy_filter(self) -> None:
        if self.fallback:  # nothing to filter on a failed stride: the monitor rejects it
            self.beginIfBlock("flashmd_fail_code = 0")
        self._add_energy_test()
        self.addComputeGlobal("flashmd_alpha", "sqrt(min(flashmd_scale_hi^2, max(flashmd_scale_lo^2, flashmd_alpha2)))")
        self.addComputePerDof("v", "v*flashmd_alpha")
        self.addComputeGlobal("flashmd_filter_count", "flashmd_filter_count + 1")
        self.addComputeGlobal("flashmd_filter_clamped", "flashmd_filter_clamped + 1 - flashmd_inband")
        self.addComputeGlobal("flashmd_alpha_sum", "flashmd_alpha_sum + flashmd_alpha")
        self.addComputeGlobal("flashmd_alpha_min", "min(flashmd_alpha_min, flashmd_alpha)")
        self.addComputeGlobal("flashmd_alpha_max", "max(flashmd_alpha_max, flashmd_alpha)")
        if self.fallback:
            self.endBlock()

    def _add_langevin(self) -> None:
        n = self._counts["O"]
        self.addComputePerDof(
            "v", f"exp(-flashmd_gamma*dt/{n})*v + sqrt((1 - exp(-2*flashmd_gamma*dt/{n}))*kT/m)*gaussian"
        )
        if self._constrained:
            self.addConstrainVelocities()

    def _add_bussi(self) -> None:
        # Bussi, Donadio & Parrinello (2007), exact resampling of the kinetic energy.
        n = self._counts["B"]
        self.addComputeSum("flashmd_ke", "0.5*m*v*v")
        self.addComputeGlobal("flashmd_r1", "gaussian")
        self.addComputeSum("flashmd_chi2", "flashmd_mask*gaussian^2")
        self.addComputeGlobal("flashmd_c", f"exp(-flashmd_gamma*dt/{n})")
        self.addComputeGlobal("flashmd_kfac", "(1 - flashmd_c)*0.5*kT/max(flashmd_ke, 1e-30)")
        self.addComputeGlobal(
            "flashmd_bussi",
            "select(step(sqrt(flashmd_c) + flashmd_r1*sqrt(flashmd_kfac)), 1, -1)"
            "*sqrt(flashmd_c + flashmd_kfac*(flashmd_r1^2 + flashmd_chi2)"
            " + 2*flashmd_r1*sqrt(flashmd_c*flashmd_kfac))",
        )
        self.addComputePerDof("v", "v*flashmd_bussi")

    # ---------------------------------------------------------------- configuration
    # Read from the integrator's global variables, so an integrator copied through XML and
    # restored by openmmtools (ContextCache, multistate storage) answers like the original.
    @property
    def stride(self) -> float:
        """The model's stride: the time one step advances (ps)."""
        return self.getGlobalVariableByName("flashmd_model_stride")

    @property
    def splitting(self) -> str:
        """The splitting, letters separated by spaces (e.g. ``"O F E O"``)."""
        return _splitting_from_code(self.getGlobalVariableByName("flashmd_splitting_code"))

    @property
    def stride_force_group(self) -> int:
        """Force group of the stride model's TorchForce."""
        return int(self.getGlobalVariableByName("flashmd_stride_group"))

    @property
    def energy_force_groups(self) -> set:
        """Force groups whose potential the energy filter and monitor use."""
        mask = int(self.getGlobalVariableByName("flashmd_energy_group_mask"))
        return {g for g in range(32) if mask >> g & 1}

    @property
    def fallback(self) -> bool:
        """Whether the stride monitor with fallback MD is on."""
        return bool(self.getGlobalVariableByName("flashmd_fallback"))

    @property
    def fallback_substeps(self) -> int:
        """Velocity Verlet substeps of one fallback stride."""
        return int(self.getGlobalVariableByName("flashmd_fallback_substeps"))

    @property
    def _failure_unit(self) -> float:
        return self.getGlobalVariableByName("flashmd_failure_unit")

    def __getattr__(self, name):
        # reached only for attributes the instance lacks: one restored from XML has no model_metadata
        if name == "model_metadata":
            raise AttributeError("model_metadata is kept by the FlashMDIntegrator built by its constructor, not by a "
                                 "copy restored from XML (openmmtools ContextCache or storage); read the model's "
                                 "metadata with openmm_flashmd.read_metadata")
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    # ---------------------------------------------------------------- Python API
    def step(self, steps: int) -> None:
        """Advance by ``steps`` strides.

        With ``fallback=True`` a failed stride is integrated with MD instead and only a state
        that is already non-finite raises. Without the fallback, a failed stride raises :class:`FlashMDError` naming it; the Context keeps
        the positions and velocities from before that stride's F (the failure flag is
        cleared, so a later ``step`` tries again from there). The remaining strides of
        the call do nothing, but OpenMM still advances the Context's time and step count
        over the whole call (an integrator cannot end ``step`` early): rewind them with
        ``context.setTime``/``setStepCount`` if it matters, or step in small chunks.
        """
        stride = self.stride
        if abs(self.getStepSize().value_in_unit(unit.picosecond) - stride) > 1e-12 * stride:
            raise FlashMDError(f"the step size is {self.getStepSize()} but this FlashMDIntegrator's model advances "
                               f"{stride} ps per step; set it back with setStepSize({stride})")
        self.setGlobalVariableByName("flashmd_energy_valid", 0.0)  # the Context may have changed since
        try:
            super().step(steps)
        except openmm.OpenMMException as err:  # e.g. a model that raises inside its TorchForce
            raise FlashMDError(f"OpenMM failed inside a FlashMD step: {error_line(err)}") from err
        failed = int(self.getGlobalVariableByName("flashmd_failed"))
        if failed:
            code = int(round(self.getGlobalVariableByName("flashmd_fail_code") / self._failure_unit))
            reason = FAILURE_REASONS.get(code, "the stride failed")
            self.setGlobalVariableByName("flashmd_failed", 0.0)
            raise FlashMDError(f"FlashMD stride {failed}: {reason} (the Context keeps the positions and "
                               "velocities from before this stride)", stride=failed)

    def setStepSize(self, size) -> None:
        """Set the step size (time Quantity or ps). A step is one stride of the model, so any
        other value makes :meth:`step` refuse to run (the program refuses too: a stride that
        does not match the model never runs); openmmtools' ``ContextCache`` sets a standard
        value on a copy to hash integrators, which is why setting it is allowed at all."""
        super().setStepSize(_in(size, unit.picosecond, "step size"))

    def getTemperature(self):
        """Heat-bath temperature, or ``None`` for NVE splittings."""
        if "kT" not in self.global_variable_names:
            return None
        return super().getTemperature()

    def getCollisionRate(self):
        """Collision rate of the O/B letters (1/ps Quantity)."""
        return self.getGlobalVariableByName("flashmd_gamma") / unit.picosecond

    def setCollisionRate(self, rate) -> None:
        """Set the collision rate (1/time Quantity or float in 1/ps)."""
        self.setGlobalVariableByName("flashmd_gamma", _in(rate, unit.picosecond**-1, "collision_rate"))

    @property
    def filter_statistics(self) -> Dict[str, float]:
        """Energy-filter statistics since construction or the last reset.

        ``count`` filtered strides; ``clamped`` strides whose scale factor left the
        band (including H - V' < 0); ``mean``/``min``/``max`` of the applied scale.
        """
        count = self.getGlobalVariableByName("flashmd_filter_count")
        return {
            "count": int(count),
            "clamped": int(self.getGlobalVariableByName("flashmd_filter_clamped")),
            "mean": self.getGlobalVariableByName("flashmd_alpha_sum") / count if count else float("nan"),
            "min": self.getGlobalVariableByName("flashmd_alpha_min") if count else float("nan"),
            "max": self.getGlobalVariableByName("flashmd_alpha_max") if count else float("nan"),
        }

    @property
    def fallback_statistics(self) -> Dict[str, float]:
        """Stride-monitor statistics since construction or the last reset (``fallback=True``).

        ``strides`` monitored, ``rejected`` of them (each integrated with MD instead),
        ``fallback_fraction`` = rejected / strides (the share of simulated time spent in
        fallback MD), and ``by_reason``: rejections per reason of
        :data:`~openmm_flashmd.integrator.fallback.REJECTION_REASONS`.
        """
        if not self.fallback:
            return {"strides": 0, "rejected": 0, "fallback_fraction": float("nan"),
                    "by_reason": {name: 0 for name in REJECTION_REASONS.values()}}
        strides = int(self.getGlobalVariableByName("flashmd_monitored"))
        by_reason = {name: int(self.getGlobalVariableByName(f"flashmd_rejected_{code}"))
                     for code, name in REJECTION_REASONS.items()}
        rejected = sum(by_reason.values())
        return {"strides": strides, "rejected": rejected,
                "fallback_fraction": rejected / strides if strides else float("nan"), "by_reason": by_reason}

    def reset_fallback_statistics(self) -> None:
        """Zero the stride-monitor statistics."""
        if self.fallback:
            for name in ("flashmd_monitored", *(f"flashmd_rejected_{code}" for code in REJECTION_REASONS)):
                self.setGlobalVariableByName(name, 0.0)

    def reset_filter_statistics(self) -> None:
        """Zero the energy-filter statistics."""
        for name, value in [
            ("flashmd_filter_count", 0.0),
            ("flashmd_filter_clamped", 0.0),
            ("flashmd_alpha_sum", 0.0),
            ("flashmd_alpha_min", 1e30),
            ("flashmd_alpha_max", -1e30),
        ]:
            self.setGlobalVariableByName(name, value)
