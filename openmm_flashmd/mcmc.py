"""FlashMD as an openmmtools MCMC move, for ``MCMCSampler`` and the multistate samplers.

:class:`FlashMDMove` propagates a replica by ``n_steps`` strides of a
:class:`~openmm_flashmd.FlashMDIntegrator` at the temperature of the replica's
``ThermodynamicState`` (the Langevin or Bussi letters follow the state; a barostat in
the System follows its pressure). Use it wherever openmmtools takes a move::

    from openmmtools import mcmc, multistate, states
    from openmm_flashmd import FlashMDIntegrator
    from openmm_flashmd.mcmc import FlashMDMove

    integrator = FlashMDIntegrator(system, "alanine-dipeptide-implicit-hbonds-8fs",
                                   temperature=300 * unit.kelvin)   # adds the stride force to system
    move = FlashMDMove(integrator, n_steps=50)
    sampler = multistate.ParallelTemperingSampler(mcmc_moves=move, number_of_iterations=100)
    sampler.create(states.ThermodynamicState(system, 300 * unit.kelvin), states.SamplerState(positions),
                   multistate.MultiStateReporter("pt.nc", checkpoint_interval=10),
                   min_temperature=300 * unit.kelvin, max_temperature=400 * unit.kelvin, n_temperatures=4)
    sampler.run()

Build the integrator on the System *before* the ``ThermodynamicState`` objects: its
constructor adds the stride model's ``TorchForce`` to that System, and every state must
carry it. The integrator is kept as XML (like openmmtools' ``IntegratorMove``), so the move
and the Systems with their TorchForces survive the samplers' NetCDF storage. Leave the
integrator's ``random_seed`` unset for replicas: copies of a seeded integrator would draw
the same thermostat noise.
"""

from __future__ import annotations

import copy

import openmm

from openmm_flashmd._plugins import quiet_import
from openmm_flashmd.integrator.fallback import REJECTION_REASONS
from openmm_flashmd.integrator.flashmd import FlashMDIntegrator

_mcmc = quiet_import("openmmtools.mcmc")
_integrators = quiet_import("openmmtools.integrators")

__all__ = ["FlashMDMove"]


def _restored(integrator: openmm.Integrator) -> FlashMDIntegrator:
    _integrators.ThermostatedIntegrator.restore_interface(integrator)
    if not isinstance(integrator, FlashMDIntegrator):
        raise TypeError(f"FlashMDMove needs a FlashMDIntegrator, got {type(integrator).__name__}")
    return integrator


class FlashMDMove(_mcmc.BaseIntegratorMove):
    """``n_steps`` FlashMD strides per application (an openmmtools ``MCMCMove``).

    Parameters
    ----------
    integrator : FlashMDIntegrator
        The template: its model, splitting, collision rate, filter and monitor settings are
        used for every replica; its temperature is replaced by each state's (K).
    n_steps : int
        Strides per application (each advances ``integrator.stride`` ps).
    reassign_velocities : bool
        Draw Maxwell-Boltzmann velocities at the state's temperature before every application.
    n_restart_attempts : int
        openmmtools' retries after a failed integration (with ``fallback=True`` a bad stride is
        integrated with MD inside the step instead, so retries are rare).
    context_cache : openmmtools.cache.ContextCache, optional
        Default: openmmtools' global cache.

    Attributes
    ----------
    statistics : dict
        Counts over every application since construction or :meth:`reset_statistics`:
        ``strides`` integrated, ``rejected`` by the stride monitor (integrated with MD instead)
        with ``rejected_by_reason``, and ``filter_clamped`` energy-filter clamps. The multistate
        samplers gather each state's move statistics across MPI ranks and set this attribute.
    """

    def __init__(self, integrator: FlashMDIntegrator, n_steps: int = 100, reassign_velocities: bool = False,
                 n_restart_attempts: int = 4, **kwargs):
        super().__init__(n_steps=int(n_steps), reassign_velocities=reassign_velocities,
                         n_restart_attempts=n_restart_attempts, **kwargs)
        self.integrator = _restored(integrator)
        self.reset_statistics()

    def _get_integrator(self, thermodynamic_state):
        integrator = _restored(copy.deepcopy(self.integrator))
        temperature = thermodynamic_state.temperature
        if integrator.getTemperature() is not None and temperature is not None:
            integrator.setTemperature(temperature)
        return integrator

    def _after_integration(self, context, thermodynamic_state):
        """Add the stride monitor's and energy filter's counts of this application to :attr:`statistics`."""
        integrator = _restored(context.getIntegrator())
        fallback, kept = integrator.fallback_statistics, self.statistics
        kept["strides"] += self.n_steps
        kept["rejected"] += fallback["rejected"]
        for reason, count in fallback["by_reason"].items():
            kept["rejected_by_reason"][reason] += count
        kept["filter_clamped"] += integrator.filter_statistics["clamped"]
        integrator.reset_fallback_statistics()
        integrator.reset_filter_statistics()

    def reset_statistics(self) -> None:
        """Zero :attr:`statistics`."""
        self.statistics = {"strides": 0, "rejected": 0, "filter_clamped": 0,
                           "rejected_by_reason": {name: 0 for name in REJECTION_REASONS.values()}}

    def __getstate__(self):
        serialization = super().__getstate__()
        serialization["integrator"] = openmm.XmlSerializer.serialize(self.integrator)
        serialization["statistics"] = self.statistics
        return serialization

    def __setstate__(self, serialization):
        super().__setstate__(serialization)
        self.integrator = _restored(openmm.XmlSerializer.deserialize(serialization["integrator"]))
        self.reset_statistics()
        self.statistics = serialization.get("statistics", self.statistics)
