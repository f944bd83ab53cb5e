#!/bin/bash
# Candidates (issue 15, 2026-12-07): averages of the bundled alanine-dipeptide-implicit-hbonds-8fs and one of its
# on-policy rounds (run.sh beside this script: the "plain" round, and the "rollout2" round with a two-stride rollout
# term), half and half (s = 0.5 fixed before any run), written to ../alanine-8fs-soup-{plain,rollout2}-0.5.pt, then
# validated as the bundled model is (1 ns NVT with and without the filter, 50 ps NVE, Ramachandran JS against the
# cached 2 ns reference; no stability run) with validate_soup.sh, 40 min each on one thread:
#   benchmarks/results/candidates/alanine-8fs-soup-{plain,rollout2}-0.5.json
# Needs $WORK/runs/ala8-onpolicy-{plain,rollout2}/round-1/model.pt (run.sh's variants make them).
set -euo pipefail
WORK=${WORK:-bundled-work}
HERE=$(dirname "$0")
for NAME in plain rollout2; do
    python examples/models/average_weights.py alanine-dipeptide-implicit-hbonds-8fs \
        "$WORK/runs/ala8-onpolicy-$NAME/round-1/model.pt" 0.5 "$HERE/../alanine-8fs-soup-$NAME-0.5.pt"
done
