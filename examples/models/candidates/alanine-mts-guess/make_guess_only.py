"""Write the multiple-time-step Verlet guess alone as a stride model (no learned part), 8 fs, 4 substeps,
bonded forces recomputed per substep: the baseline a learned correction of it has to beat.

    python examples/models/candidates/alanine-mts-guess/make_guess_only.py OUT.pt
"""
import sys

import torch

from openmm_flashmd.integrator.guess import BONDED_FORCES
from openmm_flashmd.model import VerletGuessStrideModel

torch.jit.script(VerletGuessStrideModel(0.008, 4, fast_forces=BONDED_FORCES)).save(sys.argv[1])
