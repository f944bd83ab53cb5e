#!/bin/bash
# A candidate (issue 15): the bundled water-rigid-8fs with the per-element kinetic-energy term on the velocities
# RATTLE keeps (loss.kinetic_energy=300) and its time-reversal loss, no rollout: 1500 steps, lr 1e-4 cosine,
# warm-up 50, seed 0. The same stage on the 16 fs default of 2026-12-05 closed the gap between the elements'
# KE ratios and brought oxygens from +15 K to +5 / +8 K of reference MD with the filter; the 8 fs model, whose
# oxygens run -14.1 +- 2.4 K over 948 ps, never had the term except together with the three-stride rollout,
# which moved it the other way. Its control (../water-rigid-8fs-reversal-control) runs this script with
# RUN=w8-reversal-control and --set loss.kinetic_energy=0. Started 2026-12-06 on the data of build_all.sh's
# data-water-rigid-8fs block (SHA-256 5b7ba8aa...; --resume refuses other data).
#
#   WORK=bundled-work bash examples/models/candidates/water-rigid-8fs-ke300p/train.sh           # start
#   WORK=bundled-work bash examples/models/candidates/water-rigid-8fs-ke300p/train.sh --resume  # continue
set -euo pipefail
WORK=${WORK:-bundled-work}
RUN=${RUN:-w8-ke300p}
OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} openmm-flashmd train "$WORK/water64-rigid-b.h5" "$WORK/runs/$RUN" \
    --stride 0.008 --hypers examples/models/water.yaml --set model.verlet_guess=true --set model.d_pet=96 \
    --set model.d_node=192 --set model.d_feedforward=192 \
    --set training.init_from=openmm_flashmd/models/water-rigid-8fs.pt --set training.learning_rate=1e-4 \
    --set training.warmup_steps=50 --set training.max_steps=1500 --set training.checkpoint_every=250 \
    --set loss.reversal=1.0 --set loss.kinetic_energy=300 --device cpu --quiet "$@"
