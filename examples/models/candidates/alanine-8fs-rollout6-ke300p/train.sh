#!/bin/bash
# A candidate in training (issue 15): the bundled alanine-dipeptide-implicit-hbonds-8fs recipe continued one
# more rollout stage (2000 steps, six-stride rollout loss, lr 2e-4, from the six-stride candidate of
# benchmarks/results/candidates/alanine-8fs-rollout6-1ns.json, itself 2000 steps from the bundled model) with the
# per-element kinetic-energy term on the velocities RATTLE keeps (loss.kinetic_energy=300): that candidate
# had the better Ramachandran JS (0.069 against 0.098) but oxygens hotter with the filter (+77 K against +60 K).
# Started 2026-12-05 on the data of build_all.sh's data-alanine-dipeptide-implicit-hbonds-1000 block as
# generated then (SHA-256 38c0af20...; the CPU platform does not regenerate it bit for bit, and --resume refuses
# other data). The six-stride start model is $WORK/runs/ala8-rollout6/model.pt: the last command of
# build_all.sh's alanine-dipeptide-implicit-hbonds-8fs block with loss.rollout_strides=6 and init_from the bundled
# model's run (README, learning-curves table). Next to this script: the run's hypers.yaml,
# split.json, log.csv and curves.json as they were when the session that started it ended.
#
#   WORK=bundled-work bash examples/models/candidates/alanine-8fs-rollout6-ke300p/train.sh           # start
#   WORK=bundled-work bash examples/models/candidates/alanine-8fs-rollout6-ke300p/train.sh --resume  # continue
set -euo pipefail
WORK=${WORK:-bundled-work}
OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} openmm-flashmd train "$WORK/ala-hbonds-1000.h5" "$WORK/runs/ala8-rollout6-ke300p" \
    --stride 0.008 --hypers examples/models/alanine.yaml --set model.d_pet=96 --set model.d_node=192 \
    --set model.d_feedforward=192 --set training.init_from="$WORK/runs/ala8-rollout6/model.pt" \
    --set training.learning_rate=2e-4 --set training.warmup_steps=100 --set training.max_steps=2000 \
    --set training.checkpoint_every=250 --set loss.rollout=1 --set loss.rollout_strides=6 \
    --set loss.kinetic_energy=300 --device cpu --quiet "$@"
