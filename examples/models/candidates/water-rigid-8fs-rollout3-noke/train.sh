#!/bin/bash
# A candidate (issue 15): candidates/water-rigid-8fs-rollout3 without the projected kinetic-energy term
# (loss.kinetic_energy 0; everything else equal: 1000 steps from the bundled water-rigid-8fs, lr 1.5e-4
# cosine, warm-up 50, seed 0, time-reversal loss, three-stride rollout loss with OpenMM constraints and
# Verlet guesses between strides). It separates the rollout from the KE term, which the bundled 8 fs
# model never had. Not kept (README: held-out errors equal to the run with the term, dynamics as far
# off). Started 2026-12-05 on the data of build_all.sh's data-water-rigid-8fs block as generated then
# (SHA-256 5b7ba8aa...; --resume refuses other data). Next to this script: the run's resolved
# hypers.yaml (the only input besides the data), and its split.json, log.csv and curves.json.
#
#   WORK=bundled-work bash examples/models/candidates/water-rigid-8fs-rollout3-noke/train.sh           # start
#   WORK=bundled-work bash examples/models/candidates/water-rigid-8fs-rollout3-noke/train.sh --resume  # continue
set -euo pipefail
WORK=${WORK:-bundled-work}
HERE=$(dirname "$0")
OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} openmm-flashmd train "$WORK/water64-rigid-b.h5" "$WORK/runs/w8-rollout3-noke" \
    --stride 0.008 --hypers "$HERE/hypers.yaml" --device cpu --quiet "$@"
