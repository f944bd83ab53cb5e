#!/bin/bash
# A candidate (issue 15): an 8 fs model started from the 16 fs default's weights (water-rigid-16fs, whose
# molecules keep translation and rotation at reference MD's temperature within 3 K, where water-rigid-8fs moves
# about 20 K from translation into rotation), trained at 8 fs with the recipe of the 16 fs model's first stage:
# time-reversal loss and the per-element kinetic-energy term on the velocities RATTLE keeps
# (loss.kinetic_energy=300), 1500 steps, lr 3e-4 cosine, warm-up 100, seed 0. Started 2026-12-06 on the data
# of build_all.sh's data-water-rigid-8fs block (SHA-256 5b7ba8aa...; --resume refuses other data).
#
#   WORK=bundled-work bash examples/models/candidates/water-rigid-8fs-from16/train.sh           # start
#   WORK=bundled-work bash examples/models/candidates/water-rigid-8fs-from16/train.sh --resume  # continue
set -euo pipefail
# ../water-rigid-8fs-ke300p's command with the 16 fs default's weights, lr 3e-4 and 100 warm-up steps
RUN=${RUN:-w8-from16} exec bash "$(dirname "$0")/../water-rigid-8fs-ke300p/train.sh" \
    --set training.init_from=openmm_flashmd/models/water-rigid-16fs.pt --set training.learning_rate=3e-4 \
    --set training.warmup_steps=100 "$@"
