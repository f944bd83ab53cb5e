"""Run the bundled water-rigid-16fs stride model on the built-in rigid water box (NVT, 300 K).

    python examples/bundled_water.py [--strides 100]

Builds the 64-water rigid TIP3P box, a FlashMDIntegrator with the bundled model, a
Langevin thermostat and the energy filter ("O F E O", the default with a temperature),
and prints the temperature per element and the filter statistics. Nothing is downloaded.
"""

import argparse

from openmm import app, unit

from openmm_flashmd import FlashMDIntegrator
from openmm_flashmd.analysis.thermo import system_masses, temperature_by_element
from openmm_flashmd.systems import get_system


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strides", type=int, default=100, help="number of 16 fs strides (default 100)")
    args = parser.parse_args()

    water = get_system("water-rigid")
    integrator = FlashMDIntegrator(water.system, "water-rigid-16fs", temperature=300 * unit.kelvin)
    simulation = app.Simulation(water.topology, water.system, integrator)
    simulation.context.setPositions(water.positions)
    simulation.minimizeEnergy()
    simulation.context.setVelocitiesToTemperature(300 * unit.kelvin)
    simulation.step(args.strides)

    state = simulation.context.getState(getVelocities=True)
    masses = system_masses(water.system)
    elements = [atom.element.symbol for atom in water.topology.atoms()]
    per_element = temperature_by_element(state.getVelocities(asNumpy=True).value_in_unit(unit.nanometer / unit.picosecond),
                                         masses, elements)
    time_ps = state.getTime().value_in_unit(unit.picosecond)
    print(f"{args.strides} strides = {time_ps:.2f} ps; temperature by element after the last stride: "
          + ", ".join(f"{k} {v:.0f} K" for k, v in per_element.items()))
    print(f"energy filter: {integrator.filter_statistics}")


if __name__ == "__main__":
    main()
