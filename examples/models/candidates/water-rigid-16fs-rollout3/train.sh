#!/bin/bash
# A candidate (issue 15): a rollout stage of the bundled water-rigid-16fs: 1000 steps from its
# weights (lr 1.5e-4 cosine, warm-up 50, seed 0) with its recipe's time-reversal loss and projected
# per-element kinetic-energy term (300), plus a three-stride rollout loss (loss.rollout=1,
# rollout_strides=3): before each later stride OpenMM constrains the predicted state and computes its
# Verlet guess on the data's System, as the integrator does. The control without the rollout term is the
# 2000-step second stage at lr 1.5e-4 (benchmarks/results/candidates/water-16fs-ke300p-stage2*.json).
# Started 2026-12-05 on the data of build_all.sh's data-water-rigid-8fs block as generated then (SHA-256
# 6ea1db2f...; --resume refuses other data). Next to this script: the run's resolved hypers.yaml (the only
# input besides the data), and its split.json, log.csv and curves.json.
#
#   WORK=bundled-work bash examples/models/candidates/water-rigid-16fs-rollout3/train.sh           # start
#   WORK=bundled-work bash examples/models/candidates/water-rigid-16fs-rollout3/train.sh --resume  # continue
set -euo pipefail
WORK=${WORK:-bundled-work}
HERE=$(dirname "$0")
OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} openmm-flashmd train "$WORK/water64-rigid-b.h5" "$WORK/runs/w16-rollout3" \
    --stride 0.016 --hypers "$HERE/hypers.yaml" --device cpu --quiet "$@"
