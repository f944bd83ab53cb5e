#!/bin/bash
# A candidate (issue 15), resumable across sessions: the on-policy round that fixed rigid water at 8 fs
# (../water-rigid-8fs-onpolicy-pe), applied to the bundled alanine-dipeptide-implicit-hbonds-8fs. Why: with the
# filter its oxygens run 60 K hot and its hydrogens 17 K cold against reference MD, and its Ramachandran JS is
# 0.098 (alpha_R 15 % against 39 %); the water model's per-element temperatures came within 2 K of reference MD
# only after its energy terms saw the states it visits. One round: 600 short reference segments (3 strides) from
# states the bundled model reaches after 10-60 strides (from frames of the 200-segment data of build_all.sh's
# data-alanine-dipeptide-implicit-hbonds block), then 1500 steps from the bundled model with the per-element
# kinetic-energy and potential-energy terms (the same weights as water), then two 20 ps judging runs.
# Started 2026-12-06 23:58 UTC; the same command continues where it stopped.
# Outcome (README, "Width, data and a rollout loss carry a peptide further"): not kept. The folders beside this
# file hold each variant's rounds.json (judging runs), log.csv and hypers.yaml: pe3000 (this command as written),
# pe300, ke300 (`--set loss.potential_energy=0`), plain (both terms 0; `--rounds 2` for its second round) and
# rollout2 (plain with `--set loss.rollout=1 --set loss.rollout_strides=2`); the variants reused pe3000's
# round-1.h5 (copied into their RUN folders) and judged 100 ps runs (`--judge-ps 100`).
#
#   OMP_NUM_THREADS=1 WORK=bundled-work bash examples/models/candidates/alanine-8fs-onpolicy-pe/run.sh
#
# (One torch thread per job: with OMP_NUM_THREADS=2 beside another busy job the on-policy bursts ran 100 times
# slower, 28 s a segment against 0.3 s.) Variants of the round go to their own RUN folder with later --set
# overrides, which win, e.g. the potential-energy weight ablation of 2026-12-07:
#
#   RUN=ala8-onpolicy-pe300 bash .../run.sh --set loss.potential_energy=300 --judge-ps 100
set -euo pipefail
WORK=${WORK:-bundled-work}
RUN=${RUN:-ala8-onpolicy-pe}
python examples/models/onpolicy_rounds.py openmm_flashmd/models/alanine-dipeptide-implicit-hbonds-8fs.pt \
    "$WORK/ala-hbonds.h5" "$WORK/runs/$RUN" --stride 0.008 --system alanine-dipeptide-implicit-hbonds \
    --rounds 1 --segments 600 --segment-length 0.024 --steps 1500 --hypers examples/models/alanine.yaml \
    --set model.d_pet=96 --set model.d_node=192 --set model.d_feedforward=192 \
    --set training.learning_rate=1e-4 --set training.warmup_steps=50 --set training.checkpoint_every=250 \
    --set loss.kinetic_energy=300 --set loss.potential_energy=3000 "$@"
