#!/bin/bash
# The control of candidates/water-rigid-8fs-ke300p (issue 15): the same 1500 steps from the bundled
# water-rigid-8fs (time-reversal loss, lr 1e-4 cosine, warm-up 50, seed 0) without the kinetic-energy term,
# so that what the term does is told apart from what more steps of the bundled recipe do.
#
#   WORK=bundled-work bash examples/models/candidates/water-rigid-8fs-reversal-control/train.sh           # start
#   WORK=bundled-work bash examples/models/candidates/water-rigid-8fs-reversal-control/train.sh --resume  # continue
set -euo pipefail
RUN=w8-reversal-control exec bash "$(dirname "$0")/../water-rigid-8fs-ke300p/train.sh" --set loss.kinetic_energy=0 "$@"
