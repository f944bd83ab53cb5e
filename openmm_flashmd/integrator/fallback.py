"""The stride monitor: reject a bad stride and integrate it with ordinary MD instead.

After each stride, :class:`~openmm_flashmd.integrator.FlashMDIntegrator` (with
``fallback=True``) decides on the platform whether to keep it. A stride is *rejected* when

* the adapter reports a failure code (:data:`REJECTION_REASONS` 1–4: NaN or Inf going in or
  coming out, the Verlet guess NaN, a particle moved further than ``max_displacement``; 12: a
  rigid water SETTLE could not constrain, found before the solver runs by
  :mod:`openmm_flashmd.integrator.settle`), or
  the positions are not finite once the constraints are applied (reason 8: a stride that
  SETTLE or CCMA cannot fix; checked before any force is evaluated there; unrepairable, see
  below) or only the velocities are (reason 11), or
* its energy test fails (reason 5): the energy filter's scale factor
  ``α = sqrt((H - V') / K')`` lies outside ``filter_scale_bounds`` (``H`` the total energy
  before the stride, ``V'`` and ``K'`` potential and kinetic energy after it, kJ/mol). With
  an E letter this is the filter's own factor, which then rejects instead of clamping;
  without E it is computed for the test only (one potential-energy evaluation per stride).
* thermostatted splittings: the kinetic energy after the stride (and filter) exceeds
  ``max_temperature_ratio`` x the bath's ``dof kT / 2`` (reason 6). A model that heats a
  little at every stride passes the per-stride tests; this catches it before the
  temperature doubles.
* NVE splittings: the total energy after the stride has drifted from its *anchor* by more
  than ``max_energy_drift`` x the kinetic energy at the anchor (reason 7). The anchor is the
  state a run starts from: it is set at the first stride and again whenever the positions
  or velocities entering a stride differ from those the previous stride left (the caller
  changed the state between ``step`` calls), detected by weighted checksums.

A rejected stride restores the positions and velocities from before it (with constraints,
after walking the constraint solver's reference geometry back from the rejected stride's
positions in ``REFERENCE_WALK_STEPS`` constraint solves: OpenMM's solvers take the positions
of the last constraint step as reference, and substeps from a far-away reference lose
energy or fail), and integrates the same stride with velocity Verlet substeps with the System's constraints (RATTLE) on the
System's own forces (every force group but the stride force's), in a ``while`` block of
the integrator program: no host round trip. The letters around F (thermostats) act as
usual, so a thermostatted splitting stays what the user chose, with MD in place of the
stride. Counters of monitored and rejected strides per reason are global variables of the
program, so they travel with checkpoints.
"""

from __future__ import annotations

import math
from typing import Dict, Optional

import openmm

#: Why a stride was rejected: the adapter's failure codes 1-4, then the energy test.
REJECTION_REASONS: Dict[int, str] = {
    1: "nan_input",
    2: "nan_output",
    3: "displacement",
    4: "nan_guess",
    5: "energy",
    6: "temperature",
    7: "energy_drift",
    8: "nan_constrained",
    11: "nan_constrained_velocities",
    12: "settle",
}
NAN_OUTPUT_REJECTION = 2
ENERGY_REJECTION = 5
TEMPERATURE_REJECTION = 6
DRIFT_REJECTION = 7
#: The stride's positions or velocities are not finite after the constraints (the solver failed).
CONSTRAINED_NAN_REJECTION = 8
#: Only the velocities are non-finite after the constraints: the positions, and so the constraint
#: solver's reference geometry, are sound, and the stride can be repaired.
CONSTRAINED_NAN_VELOCITY_REJECTION = 11
#: Failure code (not a rejection reason) when the fallback MD itself hits non-finite positions.
FALLBACK_FAILED = 9
#: Rejections the program cannot repair within the step: a stride entering with non-finite
#: velocities (MD from the same state is no better), and non-finite positions from the
#: constraint solver (its reference geometry is then NaN until the next step). Both set
#: ``flashmd_failed`` with the state from before the stride, so Python raises FlashMDError.
UNREPAIRABLE_REJECTIONS = (1, 8)

#: Defaults of FlashMDIntegrator's ``max_temperature_ratio`` and ``max_energy_drift``.
DEFAULT_MAX_TEMPERATURE_RATIO = 1.75
DEFAULT_MAX_ENERGY_DRIFT = 0.25

#: Fallback MD timestep (ps) for a model whose metadata does not record its reference data's
#: timestep (``provenance.data_timestep``): short enough for flexible bonds to hydrogen.
DEFAULT_FALLBACK_TIMESTEP = 0.0005

#: Constraint solves that walk the solver's reference back from a rejected stride's positions.
REFERENCE_WALK_STEPS = 8

#: Per-DOF variables: positions and velocities before the stride, positions before a drift.
SAVED_POSITIONS = "flashmd_xs"
SAVED_VELOCITIES = "flashmd_vs"
DRIFT_VARIABLE = "flashmd_x1"


def nonfinite(variable: str) -> str:
    """Per-DOF expression: 1 where ``variable`` is NaN or infinite, else 0. (``x - x`` would not
    do: Lepton simplifies it to 0 before NaN can show.)"""
    return f"1 - step(1e30 - abs({variable}))"


def declare_per_dof(integrator: openmm.CustomIntegrator, name: str) -> None:
    """Add the per-DOF variable ``name`` unless the program already has it."""
    if name not in {integrator.getPerDofVariableName(i) for i in range(integrator.getNumPerDofVariables())}:
        integrator.addPerDofVariable(name, 0.0)


def fallback_substeps(stride: float, timestep: float) -> int:
    """Velocity Verlet substeps covering ``stride`` (ps) with steps no longer than ``timestep`` (ps)."""
    if not timestep > 0.0:
        raise ValueError(f"the fallback timestep must be positive, got {timestep} ps")
    return max(1, math.ceil(stride / timestep - 1e-9))


def add_rattle_substep(integrator: openmm.CustomIntegrator, h: float, force: str, constrained: bool,
                       guarded: bool = False) -> None:
    """One velocity Verlet substep of ``h`` ps with forces ``force`` (a per-DOF expression,
    kJ/mol/nm) and, when ``constrained``, the System's constraints on positions and
    velocities (RATTLE). ``guarded``: count non-finite coordinates after the position
    constraints into ``flashmd_nonfinite`` and skip the rest of the substep (which would
    evaluate forces there) when there are any."""
    declare_per_dof(integrator, DRIFT_VARIABLE)
    integrator.addComputePerDof("v", f"v + {0.5 * h!r}*({force})/m")
    if constrained:
        integrator.addConstrainVelocities()
    integrator.addComputePerDof(DRIFT_VARIABLE, "x")
    integrator.addComputePerDof("x", f"x + {h!r}*v")
    if constrained:
        integrator.addConstrainPositions()
        if guarded:
            integrator.addComputeSum("flashmd_nonfinite", nonfinite("x"))
            integrator.beginIfBlock("flashmd_nonfinite = 0")
        integrator.addComputePerDof("v", f"(x - {DRIFT_VARIABLE})/{h!r}")
    integrator.addComputePerDof("v", f"v + {0.5 * h!r}*({force})/m")
    if constrained:
        integrator.addConstrainVelocities()
        if guarded:
            integrator.endBlock()


def add_monitor_variables(integrator: openmm.CustomIntegrator) -> None:
    """Declare the monitor's variables: saved state, decision, counters, energy anchor."""
    declare_per_dof(integrator, SAVED_POSITIONS)
    declare_per_dof(integrator, SAVED_VELOCITIES)
    for name in ("flashmd_reject", "flashmd_substep", "flashmd_monitored", "flashmd_ke_after", "flashmd_vsum",
                 "flashmd_nonfinite", "flashmd_nonfinite_v", "flashmd_unrepairable",
                 "flashmd_xsum_end", "flashmd_vsum_end", "flashmd_anchored", "flashmd_reanchor", "flashmd_h_anchor",
                 "flashmd_ke_anchor", *(f"flashmd_rejected_{code}" for code in REJECTION_REASONS)):
        integrator.addGlobalVariable(name, 0.0)


def add_finiteness_check(integrator: openmm.CustomIntegrator, failure_slot_sum: float) -> None:
    """After the stride is applied and constrained: a non-finite coordinate becomes failure code
    ``CONSTRAINED_NAN_REJECTION``, else a non-finite velocity ``CONSTRAINED_NAN_VELOCITY_REJECTION``."""
    integrator.addComputeSum("flashmd_nonfinite", nonfinite("x"))
    integrator.addComputeSum("flashmd_nonfinite_v", nonfinite("v"))
    integrator.addComputeGlobal(
        "flashmd_fail_code",
        f"{failure_slot_sum!r}*select(step(flashmd_nonfinite - 0.5), {CONSTRAINED_NAN_REJECTION}, "
        f"{CONSTRAINED_NAN_VELOCITY_REJECTION}*step(flashmd_nonfinite_v - 0.5))")


def add_save_state(integrator: openmm.CustomIntegrator) -> None:
    """Remember positions and velocities before the stride; the energy test starts passed."""
    integrator.addComputePerDof(SAVED_POSITIONS, "x")
    integrator.addComputePerDof(SAVED_VELOCITIES, "v")
    integrator.addComputeGlobal("flashmd_inband", "1")


def add_energy_anchor(integrator: openmm.CustomIntegrator) -> None:
    """NVE: (re)set the energy anchor to ``flashmd_h0`` / ``flashmd_ke`` (total and kinetic
    energy before the stride) at the first stride and whenever the state entering the stride
    is not the one the previous stride left (``flashmd_xsum`` is the positions' checksum)."""
    integrator.addComputeSum("flashmd_vsum", "flashmd_weight*v")
    integrator.addComputeGlobal("flashmd_reanchor", "1 - flashmd_anchored*delta(flashmd_xsum - flashmd_xsum_end)"
                                                    "*delta(flashmd_vsum - flashmd_vsum_end)")
    integrator.beginIfBlock("flashmd_reanchor > 0.5")
    integrator.addComputeGlobal("flashmd_h_anchor", "flashmd_h0")
    integrator.addComputeGlobal("flashmd_ke_anchor", "flashmd_ke")
    integrator.addComputeGlobal("flashmd_anchored", "1")
    integrator.endBlock()


def add_decision_and_fallback(
    integrator: openmm.CustomIntegrator, failure_slot_sum: float, stride: float, substeps: int, constrained: bool,
    max_kinetic_in_kT: Optional[float] = None, max_energy_drift: Optional[float] = None,
) -> None:
    """Decide on the stride (failure code, else energy test, else the kinetic-energy ceiling
    ``max_kinetic_in_kT`` x kT of thermostatted splittings, else the drift from the energy
    anchor of NVE splittings, ``max_energy_drift`` x the anchor's kinetic energy) and, when
    rejected, restore the saved state and integrate ``stride`` ps in ``substeps`` RATTLE
    substeps on the forces of the integration groups (``f``). ``failure_slot_sum``: what
    ``flashmd_fail_code`` sums to per unit of failure code (sentinel × 3N). An unrepairable
    rejection (non-finite state going in) sets ``flashmd_failed`` so that Python raises, as
    without the monitor."""
    later = "0"
    if max_kinetic_in_kT is not None or max_energy_drift is not None:
        integrator.addComputeSum("flashmd_ke_after", "0.5*m*v*v")
    if max_energy_drift is not None:
        later = (f"{DRIFT_REJECTION}*step(abs(flashmd_ke_after + flashmd_energy_after - flashmd_h_anchor)"
                 f" - {float(max_energy_drift)!r}*flashmd_ke_anchor)")
    if max_kinetic_in_kT is not None:
        later = f"select(step(flashmd_ke_after - {float(max_kinetic_in_kT)!r}*kT), {TEMPERATURE_REJECTION}, {later})"
    # the failure code; velocities beyond the sentinel that are no code (a model returning absurd
    # velocities) count as a failed output
    code = f"floor(flashmd_fail_code/{failure_slot_sum!r} + 0.5)"
    integrator.addComputeGlobal(
        "flashmd_reject",
        f"select(flashmd_fail_code, select(step({code} - {max(REJECTION_REASONS) + 0.5}), {NAN_OUTPUT_REJECTION}, {code}), "
        f"select(1 - flashmd_inband, {ENERGY_REJECTION}, {later}))",
    )
    integrator.addComputeGlobal("flashmd_monitored", "flashmd_monitored + 1")
    for code in REJECTION_REASONS:
        integrator.addComputeGlobal(f"flashmd_rejected_{code}",
                                    f"flashmd_rejected_{code} + delta(flashmd_reject - {code})")
    unrepairable = "+".join(f"delta(flashmd_reject - {code})" for code in UNREPAIRABLE_REJECTIONS)
    integrator.addComputeGlobal("flashmd_unrepairable", unrepairable)
    integrator.beginIfBlock("flashmd_reject > 0")
    if constrained:
        # OpenMM's constraint solvers take the positions of the last constraint step as their
        # reference geometry, here the rejected stride's; one solve from there straight to the
        # restored positions can fail (SETTLE needs small displacements), so walk back in steps.
        declare_per_dof(integrator, DRIFT_VARIABLE)
        integrator.addComputePerDof(DRIFT_VARIABLE, "x")
        for k in range(1, REFERENCE_WALK_STEPS + 1):
            integrator.addComputePerDof(
                "x", f"{DRIFT_VARIABLE} + ({SAVED_POSITIONS} - {DRIFT_VARIABLE})*{k / REFERENCE_WALK_STEPS!r}")
            integrator.addConstrainPositions()
        integrator.addComputeSum("flashmd_nonfinite", nonfinite("x"))
        integrator.addComputeGlobal("flashmd_unrepairable", "flashmd_unrepairable + step(flashmd_nonfinite - 0.5)")
    integrator.addComputePerDof("x", SAVED_POSITIONS)
    integrator.addComputePerDof("v", SAVED_VELOCITIES)
    integrator.endBlock()
    integrator.beginIfBlock("flashmd_unrepairable > 0")
    integrator.addComputeGlobal("flashmd_failed", "flashmd_step")
    integrator.endBlock()
    integrator.beginIfBlock("flashmd_reject > 0")
    integrator.beginIfBlock("flashmd_unrepairable = 0")
    # x is already restored here; assigning it again tells OpenMM's program analysis that the
    # forces of the substeps below are at other positions than the energy test's, which it would
    # otherwise compute together with that energy (a backward pass of a TorchForce every stride)
    integrator.addComputePerDof("x", SAVED_POSITIONS)
    integrator.addComputeGlobal("flashmd_substep", "0")
    integrator.addComputeGlobal("flashmd_nonfinite", "0")
    integrator.beginWhileBlock(f"flashmd_substep < {int(substeps)}")
    add_rattle_substep(integrator, stride / int(substeps), "f", constrained, guarded=True)
    # a constraint failure ends the loop (and the fallback: see below)
    integrator.addComputeGlobal("flashmd_substep", f"select(flashmd_nonfinite, {int(substeps)}, flashmd_substep + 1)")
    integrator.endBlock()
    integrator.beginIfBlock("flashmd_nonfinite > 0")  # the fallback MD failed too: back to the state before
    integrator.addComputePerDof("x", SAVED_POSITIONS)
    integrator.addComputePerDof("v", SAVED_VELOCITIES)
    integrator.addComputeGlobal("flashmd_failed", "flashmd_step")
    integrator.addComputeGlobal("flashmd_fail_code", f"{FALLBACK_FAILED * failure_slot_sum!r}")
    integrator.endBlock()
    integrator.addComputeGlobal("flashmd_energy_valid", "0")  # the filter's cached energy is stale
    integrator.endBlock()
    integrator.endBlock()
    if max_energy_drift is not None:  # the state this stride leaves, to tell whether the next one starts there
        integrator.addComputeSum("flashmd_xsum_end", "flashmd_weight*x")
        integrator.addComputeSum("flashmd_vsum_end", "flashmd_weight*v")
