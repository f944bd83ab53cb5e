# The 8 fs on-policy training recipe, sourced by run.sh here and by ../water-rigid-8fs-onpolicy-256/run.sh:
# the hyper-parameters of every step from the bundled water-rigid-8fs, as `--hypers` / `--set` flags for
# examples/models/onpolicy_rounds.py. Kinetic-energy weight 300, potential-energy weight 3 000, time reversal 1,
# lr 1e-4; the wide Verlet-guess PET of the bundled model.
RECIPE=(--hypers examples/models/water.yaml
    --set model.verlet_guess=true --set model.d_pet=96 --set model.d_node=192 --set model.d_feedforward=192
    --set training.learning_rate=1e-4 --set training.warmup_steps=50 --set training.checkpoint_every=250
    --set loss.reversal=1.0 --set loss.kinetic_energy=300 --set loss.potential_energy=3000)
