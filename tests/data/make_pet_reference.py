"""Write tests/data/pet_reference.pt: frozen PET forward outputs for test_pet's regression test.

A random-weight float32 stride model (Verlet-guess input, two attention layers) on 150 rigid
waters: its hypers, weights, inputs and outputs. The committed file was written by the PET code
of commit 35212c9, before the forward was optimised:

    mkdir -p /tmp/oldpet && git show 35212c9:openmm_flashmd/model/pet.py > /tmp/oldpet/pet_old.py
    PYTHONPATH=/tmp/oldpet python tests/data/make_pet_reference.py
"""

from pathlib import Path

import numpy as np
import openmm.unit as u
import torch

try:
    from pet_old import PETHypers, PETStrideModel  # the code the reference freezes, not today's
except ImportError:
    raise SystemExit("put the PET code of 35212c9 on PYTHONPATH as pet_old.py (see the docstring)") from None
from openmm_flashmd.systems import rigid_water_box

torch.manual_seed(0)
hypers = PETHypers(cutoff=0.35, d_pet=48, d_node=96, d_feedforward=96, num_attention_layers=2, verlet_guess=True)
model = PETStrideModel.build(hypers, 0.008, [1, 8], {1: 1.00794, 8: 15.9994}, periodic=True).eval()
model.set_scales(2.0, 0.05, 1.5, 0.01, 0.4)
water = rigid_water_box(150)
pos = torch.tensor(np.asarray(water.positions.value_in_unit(u.nanometer)), dtype=torch.float64)
box = torch.tensor([[x.value_in_unit(u.nanometer) for x in v] for v in water.system.getDefaultPeriodicBoxVectors()],
                   dtype=torch.float64)
masses = torch.tensor([water.system.getParticleMass(i).value_in_unit(u.dalton)
                       for i in range(water.system.getNumParticles())], dtype=torch.float64)
z = torch.tensor([1 if m < 2 else 8 for m in masses.tolist()])
vel = torch.randn_like(pos) * (2.49 / masses.sqrt()).unsqueeze(1)
g = vel * 0.008 + 1e-4 * torch.randn_like(pos)
w = vel + 0.1 * torch.randn_like(pos)
with torch.no_grad():
    x1, v1 = torch.jit.script(model)(pos, vel, masses, z, box, g, w)
torch.save({"hypers": hypers.to_dict(), "state_dict": model.state_dict(), "positions": pos, "velocities": vel,
            "masses": masses, "atomic_numbers": z, "box": box, "guess_displacement": g, "guess_velocities": w,
            "new_positions": x1, "new_velocities": v1}, Path(__file__).parent / "pet_reference.pt")
