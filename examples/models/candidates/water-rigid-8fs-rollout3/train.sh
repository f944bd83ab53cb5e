#!/bin/bash
# A candidate (issue 15): the 16 fs rollout stage (candidates/water-rigid-16fs-rollout3) applied to the
# bundled water-rigid-8fs: 1000 steps from its weights (lr 1.5e-4 cosine, warm-up 50, seed 0) with the
# time-reversal loss, the projected per-element kinetic-energy term (300) and a three-stride rollout loss
# (loss.rollout=1, rollout_strides=3, 24 fs): before each later stride OpenMM constrains the predicted
# state and computes its Verlet guess on the data's System, as the integrator does. Not kept (README:
# held-out errors 5-10 % lower, dynamics worse). Started 2026-12-05 on the data of build_all.sh's
# data-water-rigid-8fs block as generated then (SHA-256 5b7ba8aa...; --resume refuses other data).
# Next to this script: the run's resolved hypers.yaml (the only input besides the data), and its
# split.json, log.csv and curves.json.
#
#   WORK=bundled-work bash examples/models/candidates/water-rigid-8fs-rollout3/train.sh           # start
#   WORK=bundled-work bash examples/models/candidates/water-rigid-8fs-rollout3/train.sh --resume  # continue
set -euo pipefail
WORK=${WORK:-bundled-work}
HERE=$(dirname "$0")
OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} openmm-flashmd train "$WORK/water64-rigid-b.h5" "$WORK/runs/w8-rollout3" \
    --stride 0.008 --hypers "$HERE/hypers.yaml" --device cpu --quiet "$@"
