#!/bin/bash
# A candidate (issue 15): the exact recipe of the bundled water-rigid-16fs (2000 steps from
# water-rigid-8fs, lr 3e-4, time-reversal loss, projected per-element kinetic-energy term 300, seed 0) plus
# the energy-conservation term loss.energy=1000 (the total energy of each prediction, constrained to first
# order, against the start's, on the data's own System through OpenMM). Started 2026-12-05 on the data of
# build_all.sh's data-water-rigid-8fs block as generated then (SHA-256 6ea1db2f...; --resume refuses other
# data). Next to this script: the run's resolved hypers.yaml (the only input besides the data), and its
# split.json, log.csv and curves.json. Stopped by hand after step 500 (its last checkpoint, not kept): its
# validation loss was 0.40 against 0.31 of the same recipe at weight 300 and 0.29 without the term, at an
# energy loss no lower than weight 300's (0.0013): the term crowded out the rest.
#
#   WORK=bundled-work bash examples/models/candidates/water-rigid-16fs-energy1000/train.sh           # start
#   WORK=bundled-work bash examples/models/candidates/water-rigid-16fs-energy1000/train.sh --resume  # continue
set -euo pipefail
WORK=${WORK:-bundled-work}
HERE=$(dirname "$0")
OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} openmm-flashmd train "$WORK/water64-rigid-b.h5" "$WORK/runs/w16-energy1000" \
    --stride 0.016 --hypers "$HERE/hypers.yaml" --device cpu --quiet "$@"
