"""The frozen-force Verlet guess of a whole stride, computed on the platform.

A stride model may take, besides positions and velocities, the *Verlet guess*: where
velocity Verlet with the System's constraints (RATTLE) goes in ``n`` substeps of
``h = τ / n`` when the forces stay frozen at their values at the start of the stride::

    repeat n times:  v = C_v(v + h F / 2m);  x1 = x;  x = C_x(x + h v);  v = (x - x1) / h;
                     v = C_v(v + h F / 2m)
    guess displacement g = x - x0 (nm),  guess velocities w = v (nm/ps)

(``F`` the System's forces at the start, kJ/mol/nm; ``m`` Da; τ ps; ``C_x``, ``C_v`` the
position and velocity constraints, skipped without constraints, where the result is
exactly ``g = τ v + τ² F / 2m``, ``w = v + τ F / m``). It is physics a model then does not
have to learn: exact for constant forces, and for rigid water it follows the rigid-body
motion under the start force and torque (its errors against reference MD on 64 rigid
waters at 8 fs: the guess columns of ``benchmarks/results/held_out/water-rigid-8fs.json``,
written by ``openmm-flashmd evaluate``). Forces are projected before each
drift: raw forces on a rigid water's hydrogens are mostly cancelled by constraint forces,
and an unprojected 16 fs drift moves hydrogens so far that SETTLE fails.

*Fast forces* (a multiple-time-step guess). A model may name OpenMM Force classes in its
metadata's ``guess_fast_forces`` (e.g. ``["HarmonicBondForce", "HarmonicAngleForce",
"PeriodicTorsionForce"]``): their forces are computed again at every substep, at the
substep's positions, and only the rest stays frozen (``F = F_slow(x0) + F_fast(x)``, the
impulse r-RESPA split with the slow force applied at the start). Bonded forces are cheap and
carry the stiff vibrations a frozen force gets wrong: for alanine dipeptide with X-H bonds
constrained at 8 fs, the frozen-force guess is little better than free flight, the
multiple-time-step one several times closer to reference MD on every element
(``benchmarks/guess_errors.py``). :func:`separate_fast_forces` moves the System's forces of
those classes into a force group of their own, which the program evaluates per substep.

A model that declares the input ``"verlet_guess"`` in its metadata (with
``guess_substeps`` and optionally ``guess_fast_forces``) receives ``g`` and ``w`` after ``box``. :func:`add_verlet_guess`
appends the computation to a ``CustomIntegrator``;
:class:`openmm_flashmd.integrator.FlashMDIntegrator` runs it before each stride and
:func:`openmm_flashmd.data.guess.verlet_guesses` runs the very same program on reference
data, so a model is trained on the numbers it sees in a simulation.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

import openmm

from openmm_flashmd.integrator.fallback import DRIFT_VARIABLE, add_rattle_substep, declare_per_dof

#: Name of the input in a stride model's metadata ``inputs`` list.
VERLET_GUESS_INPUT = "verlet_guess"

#: Per-DOF variables the program uses: start positions and velocities, frozen forces,
#: the guess displacement (nm) and guess velocities (nm/ps) (and ``DRIFT_VARIABLE`` of the substeps).
START_VARIABLE = "flashmd_x0"
VELOCITY_VARIABLE = "flashmd_v0"
FORCE_VARIABLE = "flashmd_f0"
GUESS_VARIABLE = "flashmd_guess"
GUESS_VELOCITY_VARIABLE = "flashmd_guess_v"


def model_uses_guess(metadata: Dict[str, Any]) -> bool:
    """Whether a stride model (its metadata from ``read_metadata``) takes the Verlet guess."""
    return VERLET_GUESS_INPUT in (metadata.get("inputs") or [])


#: The bonded forces of an OpenMM force field (cheap, and the stiffest motions left once X-H
#: bonds are constrained): the fast forces of the bundled alanine dipeptide models.
BONDED_FORCES = ("HarmonicBondForce", "HarmonicAngleForce", "PeriodicTorsionForce")


def highest_free_group(used: set, purpose: str) -> int:
    """The highest force group (0-31) not in ``used``; ``purpose`` names what needs it in the error."""
    for group in range(31, -1, -1):
        if group not in used:
            return group
    raise ValueError(f"all 32 force groups are in use; {purpose}")


def guess_fast_forces(metadata: Dict[str, Any]) -> List[str]:
    """The Force classes a Verlet-guess model's guess recomputes per substep (metadata
    ``guess_fast_forces``; empty: every force frozen, the models from before it existed)."""
    return [str(name) for name in (metadata.get("guess_fast_forces") or [])]


def separate_fast_forces(system: openmm.System, class_names: Sequence[str],
                         groups: Optional[Sequence[int]] = None) -> Optional[int]:
    """Give the System's forces of the classes ``class_names`` (those in force ``groups``,
    when given) a force group of their own and return it; ``None`` when ``class_names`` is
    empty. Forces that already are alone in one group keep it (building twice on one System,
    or on its copy, gives the same program); otherwise they move to the highest free group.
    The System's total energy and forces do not change.
    """
    names = set(class_names)
    if not names:
        return None
    forces = [system.getForce(i) for i in range(system.getNumForces())]
    is_fast = [type(f).__name__ in names and (groups is None or f.getForceGroup() in groups) for f in forces]
    fast = [f for f, chosen in zip(forces, is_fast) if chosen]
    if not fast:
        raise ValueError(f"the stride model's guess recomputes {sorted(names)} at every substep, but this System "
                         f"has none of them{' in its energy force groups' if groups is not None else ''}; "
                         "it was trained on another kind of System")
    fast_groups = {f.getForceGroup() for f in fast}
    others = {f.getForceGroup() for f, chosen in zip(forces, is_fast) if not chosen}
    if len(fast_groups) == 1 and not fast_groups & others:
        return fast_groups.pop()
    group = highest_free_group(others | fast_groups, "the guess's fast forces need a group of their own")
    for force in fast:
        force.setForceGroup(group)
    return group


def add_guess_variables(integrator: openmm.CustomIntegrator) -> None:
    """Declare the per-DOF variables :func:`add_verlet_guess` writes."""
    for name in (START_VARIABLE, VELOCITY_VARIABLE, FORCE_VARIABLE, DRIFT_VARIABLE, GUESS_VARIABLE,
                 GUESS_VELOCITY_VARIABLE):
        declare_per_dof(integrator, name)


def add_verlet_guess(
    integrator: openmm.CustomIntegrator, stride: float, substeps: int, force: Sequence[str] = ("f",),
    constrained: bool = True, fast_group: Optional[int] = None,
) -> None:
    """Append the Verlet guess over ``stride`` (ps) in ``substeps`` substeps to ``integrator``.

    ``force`` lists the per-DOF force terms to add (e.g. ``["f"]`` or ``["f0", "f2"]``,
    kJ/mol/nm; OpenMM takes one force group per step, so each term is its own step);
    ``constrained`` applies the System's constraints. ``fast_group`` (one of the groups the
    terms sum, from :func:`separate_fast_forces`): that group's forces are evaluated again at
    every substep instead of frozen. Afterwards ``flashmd_guess`` and
    ``flashmd_guess_v`` hold the guess, ``x`` the guessed positions ``x0 + flashmd_guess``,
    ``v`` the guessed velocities and ``flashmd_v0`` the velocities before; the caller
    moves back with ``x = x - flashmd_guess`` and ``v = flashmd_v0``.
    """
    if int(substeps) < 1:
        raise ValueError(f"the Verlet guess needs at least one substep, got {substeps}")
    h = float(stride) / int(substeps)
    integrator.addComputePerDof(START_VARIABLE, "x")
    integrator.addComputePerDof(VELOCITY_VARIABLE, "v")
    first, *rest = force
    integrator.addComputePerDof(FORCE_VARIABLE, first)
    for term in rest:
        integrator.addComputePerDof(FORCE_VARIABLE, f"{FORCE_VARIABLE} + {term}")
    substep_force = FORCE_VARIABLE
    if fast_group is not None:
        integrator.addComputePerDof(FORCE_VARIABLE, f"{FORCE_VARIABLE} - f{int(fast_group)}")
        substep_force = f"{FORCE_VARIABLE} + f{int(fast_group)}"
    for _ in range(int(substeps)):
        add_rattle_substep(integrator, h, substep_force, constrained)
    integrator.addComputePerDof(GUESS_VARIABLE, f"x - {START_VARIABLE}")
    integrator.addComputePerDof(GUESS_VELOCITY_VARIABLE, "v")


def verlet_guess_integrator(system: openmm.System, stride: float, substeps: int,
                            fast_forces: Sequence[str] = ()) -> openmm.CustomIntegrator:
    """A ``CustomIntegrator`` for ``system`` whose one step computes the Verlet guess over
    ``stride`` (ps) into ``flashmd_guess`` (nm) and ``flashmd_guess_v`` (nm/ps), with the
    System's constraints if it has any and the forces of the classes ``fast_forces``
    recomputed per substep (moved to a group of their own, :func:`separate_fast_forces`).
    Its constraint tolerance is the ``CustomIntegrator`` default, the same as
    :class:`FlashMDIntegrator`'s."""
    fast_group = separate_fast_forces(system, fast_forces)
    integrator = openmm.CustomIntegrator(float(stride))
    add_guess_variables(integrator)
    add_verlet_guess(integrator, stride, substeps, ["f"], system.getNumConstraints() > 0, fast_group)
    integrator.addComputePerDof("x", f"x - {GUESS_VARIABLE}")
    integrator.addComputePerDof("v", VELOCITY_VARIABLE)
    return integrator
