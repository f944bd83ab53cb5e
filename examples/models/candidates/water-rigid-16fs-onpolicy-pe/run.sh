#!/bin/bash
# A candidate (issue 15), resumable across sessions: the 8 fs on-policy recipe (../water-rigid-8fs-onpolicy-pe) at
# 16 fs, from the bundled default water-rigid-16fs. Why: the default's blog NVE run heats by +17.6 K in 50 ps and its
# 64-water NVE run by +18.5 K; on the states of its own runs its strides carry -0.95 kJ/mol of energy error each
# (orientations -1.18, centres -0.44: benchmarks/results/onpolicy_errors.json), and the potential-energy term on the
# model's own states took the 8 fs model's orientation error from +2.84 to -0.23. Each round: 600 short reference
# segments (3 strides) from states the newest model reaches after 10-60 strides, then 1500 steps from the newest model
# on all rounds' segments (ke300p + time reversal + loss.potential_energy=3000, lr 1e-4), then two 20 ps judging runs.
# Started 2026-12-06 21:10 UTC (one thread, beside a validation run); the same command continues where it stopped.
#
#   WORK=bundled-work bash examples/models/candidates/water-rigid-16fs-onpolicy-pe/run.sh
#
# START (the model the round starts from), DATA (the reference file whose frames start the on-policy runs) and RUN
# (the folder under $WORK/runs) select variants; trailing arguments override the flags below
# (../water-rigid-16fs-onpolicy-256/run.sh, ../water-rigid-16fs-soup-onpolicy/run.sh).
set -euo pipefail
WORK=${WORK:-bundled-work}
DATA=${DATA:-$WORK/water64-rigid-b.h5}
RUN=${RUN:-w16-onpolicy-pe}
START=${START:-openmm_flashmd/models/water-rigid-16fs.pt}
source "$(dirname "$0")/recipe.sh"
python examples/models/onpolicy_rounds.py "$START" "$DATA" \
    "$WORK/runs/$RUN" --stride 0.016 --system water-rigid --rounds 1 --segments 600 \
    --segment-length 0.048 --steps 1500 "${RECIPE[@]}" "$@"
