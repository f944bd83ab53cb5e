"""256 rigid TIP3P waters (the built-in water-rigid box at 256 molecules: PME, cutoff 0.9 nm):
System XML and a State XML after 20 ps of Langevin MD at 300 K, in $WORK/w256."""
import copy
import os
import openmm
from openmm import unit
from openmm_flashmd.systems import get_system
b = get_system("water-rigid", n_molecules=256)
out = os.path.join(os.environ.get("WORK", "bundled-work"), "w256")
os.makedirs(out, exist_ok=True)
open(os.path.join(out, "system.xml"), "w").write(openmm.XmlSerializer.serialize(b.system))
integ = openmm.LangevinMiddleIntegrator(300 * unit.kelvin, 1 / unit.picosecond, 0.002 * unit.picoseconds)
integ.setRandomNumberSeed(5)
ctx = openmm.Context(copy.deepcopy(b.system), integ, openmm.Platform.getPlatformByName("CPU"), {"Threads": "1"})
ctx.setPositions(b.positions)
openmm.LocalEnergyMinimizer.minimize(ctx, 10.0, 1000)
ctx.setVelocitiesToTemperature(300 * unit.kelvin, 5)
integ.step(10000)
st = ctx.getState(getPositions=True, getVelocities=True)
open(os.path.join(out, "start.xml"), "w").write(openmm.XmlSerializer.serialize(st))
print(b.description)
