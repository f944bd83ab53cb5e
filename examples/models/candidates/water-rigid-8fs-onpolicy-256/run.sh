#!/bin/bash
# A candidate (issue 15), resumable: the 16 fs round that cools the blog's run (../water-rigid-16fs-onpolicy-256 with
# the potential-energy term at 1 000: -13.6 K where the bundled 16 fs model heats +17.6 K) at 8 fs, from the bundled
# water-rigid-8fs (blog run +23.8 K), with that model's own recipe (../water-rigid-8fs-onpolicy-pe/recipe.sh) otherwise.
# Why: the average of the 16 fs pair's weights (examples/models/average_weights.py, weight 0.5) ran the blog's 50 ps
# at +9.0 K with 0.06 % of strides as MD; an 8 fs model that errs the other way is what such an average needs.
# 150 on-policy segments of 256 waters (3 strides each) from states the model reaches after 10-60 strides of its own,
# batch 1, 1 500 steps; then two 20 ps judging runs.
#
#   OMP_NUM_THREADS=1 WORK=bundled-work bash examples/models/candidates/water-rigid-8fs-onpolicy-256/run.sh
#
# Data: $WORK/w256/water256-rigid.h5, made as ../water-rigid-16fs-onpolicy-256/run.sh says.
# Ran 2026-12-07 (one thread beside one or two other jobs; on-policy data 22 min, stopped at training step 500 and
# resumed from its checkpoint by the same command; training log, curves and judging runs in
# $WORK/runs/w8-onpolicy-256-pe1000/, copied beside this script). Weights: ../water-rigid-8fs-onpolicy-256-pe1000-round1.pt. Its two 20 ps NVT
# judging runs (second halves) put the molecules' rotation at 278.8 / 292.3 K and translation at 297.6 / 305.3 K:
# the rotation runs cold, as in the 16 fs round at this weight.
set -euo pipefail
WORK=${WORK:-bundled-work}
source "$(dirname "$0")/../water-rigid-8fs-onpolicy-pe/recipe.sh"
python examples/models/onpolicy_rounds.py openmm_flashmd/models/water-rigid-8fs.pt "$WORK/w256/water256-rigid.h5" \
    "$WORK/runs/w8-onpolicy-256-pe1000" --stride 0.008 --system water-rigid --rounds 1 --segments 150 \
    --segment-length 0.024 --steps 1500 "${RECIPE[@]}" --set training.batch_size=1 \
    --set loss.potential_energy=1000 "$@"
