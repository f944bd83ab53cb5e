#!/bin/bash
# A candidate in training (issue 15): the recipe of the bundled water-rigid-16fs (2000 steps from
# water-rigid-8fs, lr 3e-4, time-reversal loss) with the per-element kinetic-energy term on the
# velocities RATTLE keeps (loss.kinetic_energy=300) from the first step, so that its length matches
# the default's. Started 2026-12-05 on the data of build_all.sh's data-water-rigid-8fs block as it was
# generated then (SHA-256 6ea1db2f...; the CPU platform does not regenerate it bit for bit, and
# --resume refuses other data). Next to this script: the run's hypers.yaml, split.json, log.csv and
# curves.json as they were when the session that started it ended.
#
#   WORK=bundled-work bash examples/models/candidates/water-rigid-16fs-ke300p/train.sh           # start
#   WORK=bundled-work bash examples/models/candidates/water-rigid-16fs-ke300p/train.sh --resume  # continue
#
# Without $WORK/water64-rigid-b.h5 of that SHA: regenerate the data with the build_all.sh block and start
# again (the checkpoint cannot be reused; the learning curve here stays the record of the first attempt).
set -euo pipefail
WORK=${WORK:-bundled-work}
OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} openmm-flashmd train "$WORK/water64-rigid-b.h5" "$WORK/runs/w16-guess-reversal-ke300p" \
    --stride 0.016 --hypers examples/models/water.yaml --set model.verlet_guess=true --set model.d_pet=96 \
    --set model.d_node=192 --set model.d_feedforward=192 \
    --set training.init_from=openmm_flashmd/models/water-rigid-8fs.pt --set training.learning_rate=3e-4 \
    --set training.warmup_steps=100 --set training.max_steps=2000 --set training.checkpoint_every=250 \
    --set loss.reversal=1.0 --set loss.kinetic_energy=300 --device cpu --quiet "$@"
