#!/bin/bash
# A candidate (issue 15; finished 2026-12-05, 1000 steps, weights in ../water-rigid-16fs-rollout4.pt; bundled as
# water-rigid-16fs on 2026-12-06, build_all.sh's last water-rigid-16fs stage): the next rollout stage of water-rigid-16fs-rollout3 (whose weights are
# committed next to this folder): 1000 steps from them (lr 1.5e-4 cosine, warm-up 50, seed 0), time-reversal
# loss, projected per-element kinetic-energy term (300) and a four-stride rollout loss (loss.rollout=1,
# rollout_strides=4; OpenMM constrains each predicted state and computes its Verlet guess on the data's
# System). Started 2026-12-05 on the data of build_all.sh's data-water-rigid-8fs block as generated then
# (SHA-256 6ea1db2f...; --resume refuses other data). Next to this script: the run's resolved hypers.yaml
# (the only input besides the data) and, once written, its split.json, log.csv and curves.json.
#
#   WORK=bundled-work bash examples/models/candidates/water-rigid-16fs-rollout4/train.sh           # start
#   WORK=bundled-work bash examples/models/candidates/water-rigid-16fs-rollout4/train.sh --resume  # continue
set -euo pipefail
WORK=${WORK:-bundled-work}
HERE=$(dirname "$0")
OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} openmm-flashmd train "$WORK/water64-rigid-b.h5" "$WORK/runs/w16-rollout4" \
    --stride 0.016 --hypers "$HERE/hypers.yaml" --device cpu --quiet "$@"
