#!/bin/bash
# A candidate (issue 15), resumable across sessions: on-policy rounds (examples/models/onpolicy_rounds.py) from the
# bundled water-rigid-8fs with the ke300p recipe plus the potential-energy term (loss.potential_energy=3000). Why:
# on the states of its own runs the 8 fs model's predicted orientations carry +2.8 kJ/mol of potential energy per
# stride (+1.3 on reference states), and the term trained on reference states took that only to +1.7 on its own
# states (../water-rigid-8fs-pe3000): the term has to see the states the model visits. Each round: 600 short
# reference segments (3 strides) from states the newest model reaches after 10-60 strides, then 1500 steps from
# the newest model on all rounds' segments, then two 20 ps judging runs. Started 2026-12-06 19:50 UTC (2 threads);
# the same command continues where it stopped (finished round files are kept, training resumes its checkpoint).
#
#   WORK=bundled-work bash examples/models/candidates/water-rigid-8fs-onpolicy-pe/run.sh
#
# Its start model is the water-rigid-8fs bundled until 2026-12-06 (`git show 07c5eac:openmm_flashmd/models/water-rigid-8fs.pt`);
# round 1's model replaced it that day (build_all.sh's water-rigid-8fs block), so a rerun from scratch must restore that file first.
set -euo pipefail
WORK=${WORK:-bundled-work}
source "$(dirname "$0")/recipe.sh"
python examples/models/onpolicy_rounds.py openmm_flashmd/models/water-rigid-8fs.pt "$WORK/water64-rigid-b.h5" \
    "$WORK/runs/w8-onpolicy-pe" --stride 0.008 --system water-rigid --rounds 2 --segments 600 \
    --segment-length 0.024 --steps 1500 "${RECIPE[@]}" "$@"
