#!/bin/bash
# A candidate (issue 15), resumable: one on-policy round of the default's recipe on data from both box sizes. The
# 64-water round (../water-rigid-16fs-onpolicy-pe) took the blog's 258-water NVE run to +13.4 K, the 256-water rounds
# (../water-rigid-16fs-onpolicy-256) to -27.7 K (potential-energy weight 3 000) and -13.6 K (1 000); this one trains
# on both sets of on-policy segments at once: 300 of the 64-water round's, each as its 2x2x1 periodic replica
# (tile.py beside this script: positions shifted by box vectors, energies x4, the System replicated, cutoff 0.609 nm;
# one stride of a box and of its replica agree per atom, test_a_periodic_replica_gets_the_same_stride_per_atom), and
# the 150 of the first 256-water round; `train` needs one atom count across files. Verlet guesses of all segments
# use the first file's System (the replica, cutoff 0.609 nm).
#
# Finished 2026-12-07 (2 780 s on one thread beside two jobs), not kept: blog run 320.3 -> 338.8 K (+18.5 K, 13 % of
# strides as MD), 2 ps NVE +2.91 kJ/mol per water at 256 waters (default +2.35), held-out H 2.11e-3 nm (default
# 2.00e-3); weights ../water-rigid-16fs-onpolicy-mixed-round1.pt, judging JSON in benchmarks/results/candidates/ and
# held_out/candidates/ (*-onpolicy-mixed-round1*). Log, curves, hypers and split beside this script.
#
#   OMP_NUM_THREADS=1 WORK=bundled-work bash examples/models/candidates/water-rigid-16fs-onpolicy-mixed/run.sh
#
# Needs $WORK/runs/w16-onpolicy-pe/round-1.h5 and $WORK/runs/w16-onpolicy-256/round-1.h5 (the two rounds' run.sh
# make them: about 35 and 25 min on one thread). Resumes from its checkpoint when run again.
set -euo pipefail
WORK=${WORK:-bundled-work}
HERE=$(dirname "$0")
OUT=$WORK/runs/w16-onpolicy-mixed
TILED=$WORK/runs/w64x4-onpolicy.h5
test -f "$TILED" || python "$HERE/tile.py" "$WORK/runs/w16-onpolicy-pe/round-1.h5" "$TILED" \
    --copies 2 2 1 --segments 300
RESUME=""
test -f "$OUT/checkpoint.pt" && RESUME=--resume
source "$HERE/../water-rigid-16fs-onpolicy-pe/recipe.sh"
openmm-flashmd train "$TILED" "$WORK/runs/w16-onpolicy-256/round-1.h5" "$OUT" --stride 0.016 --device cpu --quiet \
    --set training.init_from=openmm_flashmd/models/water-rigid-16fs.pt --set training.max_steps=1500 \
    "${RECIPE[@]}" --set training.batch_size=1 $RESUME "$@"
