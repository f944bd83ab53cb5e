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

A model that declares the input ``"verlet_guess"`` in its metadata (with
``guess_substeps``) receives ``g`` and ``w`` after ``box``. :func:`add_verlet_guess`
appends the computation to a ``CustomIntegrator``;
:class:`openmm_flashmd.integrator.FlashMDIntegrator` runs it before each stride and
:func:`openmm_flashmd.data.guess.verlet_guesses` runs the very same program on reference
data, so a model is trained on the numbers it sees in a simulation.
"""

from __future__ import annotations

from typing import Any, Dict, Sequence

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


def add_guess_variables(integrator: openmm.CustomIntegrator) -> None:
    """Declare the per-DOF variables :func:`add_verlet_guess` writes."""
    for name in (START_VARIABLE, VELOCITY_VARIABLE, FORCE_VARIABLE, DRIFT_VARIABLE, GUESS_VARIABLE,
                 GUESS_VELOCITY_VARIABLE):
        declare_per_dof(integrator, name)


def add_verlet_guess(
    integrator: openmm.CustomIntegrator, stride: float, substeps: int, force: Sequence[str] = ("f",),
    constrained: bool = True,
) -> None:
    """Append the Verlet guess over ``stride`` (ps) in ``substeps`` substeps to ``integrator``.

    ``force`` lists the per-DOF force terms to add (e.g. ``["f"]`` or ``["f0", "f2"]``,
    kJ/mol/nm; OpenMM takes one force group per step, so each term is its own step);
    ``constrained`` applies the System's constraints. Afterwards ``flashmd_guess`` and
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
    for _ in range(int(substeps)):
        add_rattle_substep(integrator, h, FORCE_VARIABLE, constrained)
    integrator.addComputePerDof(GUESS_VARIABLE, f"x - {START_VARIABLE}")
    integrator.addComputePerDof(GUESS_VELOCITY_VARIABLE, "v")


def verlet_guess_integrator(stride: float, substeps: int, constrained: bool) -> openmm.CustomIntegrator:
    """A ``CustomIntegrator`` whose one step computes the Verlet guess over ``stride`` (ps)
    into ``flashmd_guess`` (nm) and ``flashmd_guess_v`` (nm/ps). Its constraint tolerance is
    the ``CustomIntegrator`` default, the same as :class:`FlashMDIntegrator`'s."""
    integrator = openmm.CustomIntegrator(float(stride))
    add_guess_variables(integrator)
    add_verlet_guess(integrator, stride, substeps, ["f"], constrained)
    integrator.addComputePerDof("x", f"x - {GUESS_VARIABLE}")
    integrator.addComputePerDof("v", VELOCITY_VARIABLE)
    return integrator
