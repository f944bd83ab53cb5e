#!/bin/bash
# Candidate (issue 15, 2026-12-07): one more on-policy round, now from the states of the weight average
# ../alanine-8fs-soup-rollout2-0.5.pt (soup.sh; Ramachandran JS 0.073 at 1 ns, the best alanine 8 fs model so far),
# with the recipe of the rollout2 round that made it (run.sh with both energy terms off and a two-stride rollout
# term), then the average of the new round with its start model, half and half (s = 0.5, as for the first soup,
# fixed before any run): ../alanine-8fs-soup2-rollout2-0.5.pt. Judged by benchmarks/ramachandran_windows.py (3 ns,
# every 1 ns window against the cached 2 ns reference MD and against exact dynamics' own windows).
#   OMP_NUM_THREADS=1 WORK=bundled-work bash examples/models/candidates/alanine-8fs-onpolicy-pe/soup_round2.sh
# The same command continues where it stopped (onpolicy_rounds.py resumes; the average is remade).
# Outcome (2026-12-07, README "What the goal's comparison reads for exact dynamics"): training 1 500 steps in 16 min on
# one thread beside two other jobs (soup-round2/: log.csv, hypers.yaml, rounds.json with the judging runs); 1 ns
# windows JS 0.091 / 0.094 / 0.091 against its start's 0.080 / 0.080 / 0.075 (benchmarks/results/ramachandran_windows.json):
# not kept.
set -euo pipefail
WORK=${WORK:-bundled-work}
HERE=$(dirname "$0")
START="$HERE/../alanine-8fs-soup-rollout2-0.5.pt"
RUN="$WORK/runs/ala8-soup-onpolicy-rollout2"
python examples/models/onpolicy_rounds.py "$START" "$WORK/ala-hbonds.h5" "$RUN" --stride 0.008 \
    --system alanine-dipeptide-implicit-hbonds --rounds 1 --segments 600 --segment-length 0.024 --steps 1500 \
    --hypers examples/models/alanine.yaml \
    --set model.d_pet=96 --set model.d_node=192 --set model.d_feedforward=192 \
    --set training.learning_rate=1e-4 --set training.warmup_steps=50 --set training.checkpoint_every=250 \
    --set loss.kinetic_energy=0 --set loss.potential_energy=0 --set loss.rollout=1 --set loss.rollout_strides=2 \
    --judge-ps 100
python examples/models/average_weights.py "$START" "$RUN/round-1/model.pt" 0.5 "$HERE/../alanine-8fs-soup2-rollout2-0.5.pt"
