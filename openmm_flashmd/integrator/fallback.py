"""The stride monitor: reject a bad stride and integrate it with ordinary MD instead.

After each stride, :class:`~openmm_flashmd.integrator.FlashMDIntegrator` (with
``fallback=True``) decides on the platform whether to keep it. A stride is *rejected* when

* the adapter reports a failure code (:data:`REJECTION_REASONS` 1–4: NaN or Inf going in or
  coming out, the Verlet guess NaN, a particle moved further than ``max_displacement``), or
* its energy test fails (reason 5): the energy filter's scale factor
  ``α = sqrt((H - V') / K')`` lies outside ``filter_scale_bounds`` (``H`` the total energy
  before the stride, ``V'`` and ``K'`` potential and kinetic energy after it, kJ/mol). With
  an E letter this is the filter's own factor, which then rejects instead of clamping;
  without E it is computed for the test only (one potential-energy evaluation per stride).

A rejected stride restores the positions and velocities from before it and integrates the
same stride with velocity Verlet substeps with the System's constraints (RATTLE) on the
System's own forces (every force group but the stride force's), in a ``while`` block of
the integrator program: no host round trip. The letters around F (thermostats) act as
usual, so a thermostatted splitting stays what the user chose, with MD in place of the
stride. Counters of monitored and rejected strides per reason are global variables of the
program, so they travel with checkpoints.
"""

from __future__ import annotations

import math
from typing import Dict

import openmm

#: Why a stride was rejected: the adapter's failure codes 1-4, then the energy test.
REJECTION_REASONS: Dict[int, str] = {
    1: "nan_input",
    2: "nan_output",
    3: "displacement",
    4: "nan_guess",
    5: "energy",
}
ENERGY_REJECTION = 5
#: A stride entering with non-finite velocities cannot be repaired by MD from the same state.
UNREPAIRABLE_REJECTION = 1

#: Fallback MD timestep (ps) for a model whose metadata does not record its reference data's
#: timestep (``provenance.data_timestep``): short enough for flexible bonds to hydrogen.
DEFAULT_FALLBACK_TIMESTEP = 0.0005

#: Per-DOF variables: positions and velocities before the stride, positions before a drift.
SAVED_POSITIONS = "flashmd_xs"
SAVED_VELOCITIES = "flashmd_vs"
DRIFT_VARIABLE = "flashmd_x1"


def declare_per_dof(integrator: openmm.CustomIntegrator, name: str) -> None:
    """Add the per-DOF variable ``name`` unless the program already has it."""
    if name not in {integrator.getPerDofVariableName(i) for i in range(integrator.getNumPerDofVariables())}:
        integrator.addPerDofVariable(name, 0.0)


def fallback_substeps(stride: float, timestep: float) -> int:
    """Velocity Verlet substeps covering ``stride`` (ps) with steps no longer than ``timestep`` (ps)."""
    if not timestep > 0.0:
        raise ValueError(f"the fallback timestep must be positive, got {timestep} ps")
    return max(1, math.ceil(stride / timestep - 1e-9))


def add_rattle_substep(integrator: openmm.CustomIntegrator, h: float, force: str, constrained: bool) -> None:
    """One velocity Verlet substep of ``h`` ps with forces ``force`` (a per-DOF expression,
    kJ/mol/nm) and, when ``constrained``, the System's constraints on positions and
    velocities (RATTLE)."""
    declare_per_dof(integrator, DRIFT_VARIABLE)
    integrator.addComputePerDof("v", f"v + {0.5 * h!r}*{force}/m")
    if constrained:
        integrator.addConstrainVelocities()
    integrator.addComputePerDof(DRIFT_VARIABLE, "x")
    integrator.addComputePerDof("x", f"x + {h!r}*v")
    if constrained:
        integrator.addConstrainPositions()
        integrator.addComputePerDof("v", f"(x - {DRIFT_VARIABLE})/{h!r}")
    integrator.addComputePerDof("v", f"v + {0.5 * h!r}*{force}/m")
    if constrained:
        integrator.addConstrainVelocities()


def add_monitor_variables(integrator: openmm.CustomIntegrator) -> None:
    """Declare the monitor's variables: saved state, decision, counters."""
    declare_per_dof(integrator, SAVED_POSITIONS)
    declare_per_dof(integrator, SAVED_VELOCITIES)
    for name in ("flashmd_reject", "flashmd_substep", "flashmd_monitored",
                 *(f"flashmd_rejected_{code}" for code in REJECTION_REASONS)):
        integrator.addGlobalVariable(name, 0.0)


def add_save_state(integrator: openmm.CustomIntegrator) -> None:
    """Remember positions and velocities before the stride; the energy test starts passed."""
    integrator.addComputePerDof(SAVED_POSITIONS, "x")
    integrator.addComputePerDof(SAVED_VELOCITIES, "v")
    integrator.addComputeGlobal("flashmd_inband", "1")


def add_decision_and_fallback(
    integrator: openmm.CustomIntegrator, failure_slot_sum: float, stride: float, substeps: int, constrained: bool
) -> None:
    """Decide on the stride (failure code, else energy test) and, when rejected, restore the
    saved state and integrate ``stride`` ps in ``substeps`` RATTLE substeps on the forces of
    the integration groups (``f``). ``failure_slot_sum``: what ``flashmd_fail_code`` sums to
    per unit of failure code (sentinel × 3N). An unrepairable rejection (non-finite state
    going in) sets ``flashmd_failed`` so that Python raises, as without the monitor."""
    integrator.addComputeGlobal(
        "flashmd_reject",
        f"select(flashmd_fail_code, floor(flashmd_fail_code/{failure_slot_sum!r} + 0.5), "
        f"{ENERGY_REJECTION}*(1 - flashmd_inband))",
    )
    integrator.addComputeGlobal("flashmd_monitored", "flashmd_monitored + 1")
    for code in REJECTION_REASONS:
        integrator.addComputeGlobal(f"flashmd_rejected_{code}",
                                    f"flashmd_rejected_{code} + delta(flashmd_reject - {code})")
    integrator.beginIfBlock(f"flashmd_reject = {UNREPAIRABLE_REJECTION}")
    integrator.addComputeGlobal("flashmd_failed", "flashmd_step")
    integrator.endBlock()
    integrator.beginIfBlock(f"flashmd_reject > {UNREPAIRABLE_REJECTION}")
    integrator.addComputePerDof("x", SAVED_POSITIONS)
    integrator.addComputePerDof("v", SAVED_VELOCITIES)
    integrator.addComputeGlobal("flashmd_substep", "0")
    integrator.beginWhileBlock(f"flashmd_substep < {int(substeps)}")
    add_rattle_substep(integrator, stride / int(substeps), "f", constrained)
    integrator.addComputeGlobal("flashmd_substep", "flashmd_substep + 1")
    integrator.endBlock()
    integrator.addComputeGlobal("flashmd_energy_valid", "0")  # the filter's cached energy is stale
    integrator.endBlock()
