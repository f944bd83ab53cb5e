#!/bin/bash
# A candidate (issue 15), resumable: 1000 steps from the bundled alanine-dipeptide-implicit-hbonds-8fs with the
# equivariance term (loss.equivariance = WEIGHT; 3, as for water, fixed before any run) and its control (WEIGHT=0),
# on the 200-segment reference data of the on-policy rounds (ala-hbonds.h5), lr 1e-4. Why: on held-out pairs the
# bundled model's stride changes by 9.3e-4 nm (H) when it is predicted in a randomly turned frame, 70 % of its
# position error (1.33e-3 nm); for water-rigid-16fs it is 45 % (`openmm-flashmd evaluate`'s frame dependence).
# Finished 2026-12-07 (11 and 4 min on one thread beside other jobs; logs, curves, hypers and splits in weight3/
# and control/, weights ../alanine-8fs-equivariance-{3,control}.pt), not kept, no dynamics run: on the runs' own 20
# validation segments (held_out/candidates/alanine-8fs-equivariance-*.json, alanine-8fs-bundled-on-equivariance-split.json)
# the term cut the frame dependence by 18 % (H 6.7e-4 against the control's 8.1e-4 nm; bundled 9.3e-4) but raised
# the position errors 5 % above the control's (H 1.23e-3 against 1.17e-3 nm; bundled 1.34e-3) and damped every
# element (KE ratios 0.94-0.96 against 0.98-0.99).
#
#   WEIGHT=3 WORK=bundled-work bash examples/models/candidates/alanine-8fs-equivariance/run.sh
#   WEIGHT=0 WORK=bundled-work bash examples/models/candidates/alanine-8fs-equivariance/run.sh   # control
set -euo pipefail
WORK=${WORK:-bundled-work}
WEIGHT=${WEIGHT:-3}
bash "$(dirname "$0")/../train_resumable.sh" "$WORK/ala-hbonds.h5" "$WORK/runs/ala8-equivariance-$WEIGHT" --stride 0.008 \
    --hypers examples/models/alanine.yaml --set model.d_pet=96 --set model.d_node=192 \
    --set model.d_feedforward=192 --set training.init_from=openmm_flashmd/models/alanine-dipeptide-implicit-hbonds-8fs.pt \
    --set training.learning_rate=1e-4 --set training.warmup_steps=50 --set training.max_steps=1000 \
    --set training.checkpoint_every=250 --set loss.equivariance="$WEIGHT" "$@"
