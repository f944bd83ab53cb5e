#!/bin/bash
# A candidate (issue 15): the exact recipe of the bundled water-rigid-16fs (2000 steps from
# water-rigid-8fs, lr 3e-4, time-reversal loss, projected per-element kinetic-energy term 300) with
# training.seed=1, to measure the recipe's own spread in the validation runs. Started 2026-12-05 on the
# data of build_all.sh's data-water-rigid-8fs block as generated then (SHA-256 6ea1db2f...; the CPU
# platform does not regenerate it bit for bit, and --resume refuses other data). Next to this script:
# the run's resolved hypers.yaml (the only input besides the data), split.json, log.csv and curves.json
# of the finished run (2000 steps: 1500 in the session that started it, the rest resumed on 2026-12-05).
#
#   WORK=bundled-work bash examples/models/candidates/water-rigid-16fs-seed1/train.sh           # start
#   WORK=bundled-work bash examples/models/candidates/water-rigid-16fs-seed1/train.sh --resume  # continue
#
# Without $WORK/water64-rigid-b.h5 of that SHA: regenerate the data with the build_all.sh block and start
# again (the checkpoint cannot be reused; the learning curve here stays the record of the first attempt).
set -euo pipefail
WORK=${WORK:-bundled-work}
HERE=$(dirname "$0")
OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} openmm-flashmd train "$WORK/water64-rigid-b.h5" "$WORK/runs/w16-recipe-seed1" \
    --stride 0.016 --hypers "$HERE/hypers.yaml" --device cpu --quiet "$@"
