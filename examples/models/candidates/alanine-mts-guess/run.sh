#!/bin/bash
# Alanine dipeptide (HBonds) at FS = 8 or 16 fs, a PET correcting the multiple-time-step Verlet guess (bonded forces
# recomputed at each 2 fs substep, nonbonded and GB forces frozen at the start; openmm_flashmd.integrator.guess),
# trained from scratch on the bundled 8 fs model's data (build_all.sh's data-alanine-dipeptide-implicit-hbonds-1000
# block, as $WORK/ala-hbonds-1000.h5) with its architecture (alanine.yaml widened: d_pet 96, d_node and
# d_feedforward 192). Settings fixed before any run: 6000 steps, alanine.yaml's batch 16 and learning rate 1e-3, no
# rollout or reversal term. Writes $WORK/alanine-${FS}fs-mts-guess; resumes from its checkpoint when run again:
#   FS=8 WORK=bundled-work OMP_NUM_THREADS=1 bash examples/models/candidates/alanine-mts-guess/run.sh
# With STAGE=rollout2: then 2000 steps from that model with a two-stride rollout loss (loss.rollout=1, lr 3e-4; the
# 16 fs model's runs went wrong where its single strides were good), into $WORK/alanine-${FS}fs-mts-guess-rollout2.
set -euo pipefail
WORK=${WORK:-bundled-work}
FS=${FS:-8}
ARCH=(--stride "$(printf '0.%03d' "$FS")" --hypers examples/models/alanine.yaml --set model.d_pet=96
      --set model.d_node=192 --set model.d_feedforward=192 --set model.verlet_guess=true
      --set "model.guess_substeps=$((FS / 2))"
      --set 'model.guess_fast_forces=[HarmonicBondForce, HarmonicAngleForce, PeriodicTorsionForce]'
      --set training.checkpoint_every=250)
BASE="$WORK/alanine-${FS}fs-mts-guess"
if [ "${STAGE:-base}" = rollout2 ]; then
    bash examples/models/candidates/train_resumable.sh "$WORK/ala-hbonds-1000.h5" "$BASE-rollout2" "${ARCH[@]}" \
        --set training.init_from="$BASE/model.pt" --set training.learning_rate=3e-4 --set training.warmup_steps=100 \
        --set training.max_steps=2000 --set loss.rollout=1 --set loss.rollout_strides=2
else
    bash examples/models/candidates/train_resumable.sh "$WORK/ala-hbonds-1000.h5" "$BASE" "${ARCH[@]}" \
        --set training.max_steps=6000
fi
