#!/bin/bash
# A candidate (issue 15; finished 2026-12-06, 1000 steps in 3361 s on one thread, best validation loss 2.192 at
# the last step; weights in ../water-rigid-16fs-rollout5.pt; validated the same day and not kept, see the README): the next rollout stage of
# water-rigid-16fs (the
# four-stride model bundled on 2026-12-06, whose exact weights are examples/models/candidates/water-rigid-16fs-rollout4.pt):
# 1000 steps from them (lr 1.5e-4 cosine, warm-up 50, seed 0), the time-reversal loss, the projected per-element
# kinetic-energy term (300) and a five-stride rollout loss (loss.rollout=1, rollout_strides=5; OpenMM constrains
# each predicted state and computes its Verlet guess on the data's System). On the data of build_all.sh's
# data-water-rigid-8fs block as generated on 2026-12-05 (SHA-256 5b7ba8aa...; --resume refuses other data). Next
# to this script: the run's resolved hypers.yaml (the only input besides the data) and, once written, its
# split.json, log.csv and curves.json.
#
#   WORK=bundled-work bash examples/models/candidates/water-rigid-16fs-rollout5/train.sh           # start
#   WORK=bundled-work bash examples/models/candidates/water-rigid-16fs-rollout5/train.sh --resume  # continue
set -euo pipefail
WORK=${WORK:-bundled-work}
HERE=$(dirname "$0")
OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} openmm-flashmd train "$WORK/water64-rigid-b.h5" "$WORK/runs/w16-rollout5" \
    --stride 0.016 --hypers "$HERE/hypers.yaml" --device cpu --quiet "$@"
