#!/usr/bin/env bash
# Rebuild every bundled stride model from scratch: reference data, training, bundling.
# These are the exact commands used for the models in openmm_flashmd/models/ (each model's
# card quotes its blocks). CPU, 1 thread per job; run blocks in parallel where cores allow.
#   bash examples/models/build_all.sh [WORK_DIR]   (default bundled-work, relative to the repository root)
set -euo pipefail
cd "$(dirname "$0")/../.."
WORK="${1:-bundled-work}"
mkdir -p "$WORK"
export OMP_NUM_THREADS=1

# >>> data-water-rigid-8fs
openmm-flashmd generate --system water-rigid --timestep 0.001 --n-segments 120 --segment-length 0.5 \
    --decorrelate 0.5 --seed 7 --platform CPU "$WORK/water64-rigid-b.h5"
# <<< data-water-rigid-8fs

# >>> water-rigid-8fs
# data: data-water-rigid-8fs
# Corrects the frozen-force Verlet guess (model.verlet_guess), with a PET twice as wide as
# water.yaml's (d_pet 96, d_node and d_feedforward 192: 1.5 MB). 10000 steps on one thread took
# 95 min beside another job; chosen over the narrower model by the ablation in
# benchmarks/results/learning_curves.json (held-out errors and a 20 ps NVT run).
openmm-flashmd train "$WORK/water64-rigid-b.h5" "$WORK/water-rigid-8fs-base" --stride 0.008 \
    --hypers examples/models/water.yaml --set model.verlet_guess=true --set model.d_pet=96 \
    --set model.d_node=192 --set model.d_feedforward=192 --set training.max_steps=10000 \
    --set training.checkpoint_every=250 --device cpu
# Then 6000 more steps from that model at a lower learning rate (107 min on 2 threads beside other
# jobs): held-out errors 8-9 % lower and a closer NVT run (the ablation's last water-rigid-8fs entry).
# The bundled model's two stages saw two generations of the data command above, which the CPU
# platform did not reproduce bit for bit (SHA-256 884c445f... for the first, de5b86a7... for the
# second); the held-out segments below are validation segments of both splits.
openmm-flashmd train "$WORK/water64-rigid-b.h5" "$WORK/water-rigid-8fs-ft" --stride 0.008 \
    --hypers examples/models/water.yaml --set model.verlet_guess=true --set model.d_pet=96 \
    --set model.d_node=192 --set model.d_feedforward=192 \
    --set training.init_from="$WORK/water-rigid-8fs-base/model.pt" --set training.learning_rate=3e-4 \
    --set training.warmup_steps=100 --set training.max_steps=6000 --set training.checkpoint_every=250 --device cpu
# Then 1500 steps with the time-reversal loss (loss.reversal=1) from that model (28 min on one thread
# beside another job, on a third generation of the data, SHA-256 6ea1db2f...): chosen over a control of
# the same 1500 steps without the term by the ablation in benchmarks/results/learning_curves.json
# (20 ps NVT: H +7.7 / O -16.4 K from reference MD, the control's +27.7 / -51.5 K) and by
# benchmarks/results/onpolicy_errors.json (energy error per stride on its own states +1.4 +- 3.1
# kJ/mol, the control's +9.9 +- 8.0).
openmm-flashmd train "$WORK/water64-rigid-b.h5" "$WORK/water-rigid-8fs-reversal" --stride 0.008 \
    --hypers examples/models/water.yaml --set model.verlet_guess=true --set model.d_pet=96 \
    --set model.d_node=192 --set model.d_feedforward=192 \
    --set training.init_from="$WORK/water-rigid-8fs-ft/model.pt" --set training.learning_rate=3e-4 \
    --set training.warmup_steps=100 --set training.max_steps=1500 --set training.checkpoint_every=250 \
    --set loss.reversal=1.0 --device cpu
# Then one on-policy round (examples/models/onpolicy_rounds.py; bundled 2026-12-06): 600 reference segments of
# three strides from states that model reaches after 10-60 strides of its own (10.5 min), and 1500 steps from it
# on those segments with the per-element kinetic-energy term on the velocities RATTLE keeps
# (loss.kinetic_energy=300) and the potential-energy term (loss.potential_energy=3000: the predicted positions'
# potential energy on the data's System against the reference's), lr 1e-4 (986 s on two threads). On its own
# states the orientations' potential-energy error per stride fell from +2.84 to -0.23 kJ/mol
# (benchmarks/results/candidates/onpolicy_errors-water-8fs.json); the same terms on reference states alone took it
# only to +1.66 (examples/models/candidates/water-rigid-8fs-pe3000). Its full validation with the filter: see
# the card; 60 ps runs: translation 298 / 302 K and rotation 296 / 299 K against 278-280 / 313-316 K before
# (benchmarks/results/candidates/molecule_motion-water-8fs-onpolicy-pe-round1-seed*.json).
python examples/models/onpolicy_rounds.py "$WORK/water-rigid-8fs-reversal/model.pt" "$WORK/water64-rigid-b.h5" \
    "$WORK/water-rigid-8fs-onpolicy" --stride 0.008 --system water-rigid --rounds 1 --segments 600 \
    --segment-length 0.024 --steps 1500 --hypers examples/models/water.yaml \
    --set model.verlet_guess=true --set model.d_pet=96 --set model.d_node=192 --set model.d_feedforward=192 \
    --set training.learning_rate=1e-4 --set training.warmup_steps=50 --set training.checkpoint_every=250 \
    --set loss.reversal=1.0 --set loss.kinetic_energy=300 --set loss.potential_energy=3000
mkdir -p "$WORK/water-rigid-8fs" && cp "$WORK/water-rigid-8fs-onpolicy/round-1/model.pt" "$WORK/water-rigid-8fs/model.pt"
openmm-flashmd evaluate "$WORK/water-rigid-8fs/model.pt" "$WORK/water64-rigid-b.h5" \
    --segments 1,5,13,16,23,27,36,50,67,101,107,114 \
    --json benchmarks/results/held_out/water-rigid-8fs.json --overwrite
# <<< water-rigid-8fs

# >>> water-rigid-16fs
# data: data-water-rigid-8fs
# water-rigid-8fs's network, data and Verlet guess at a 16 fs stride, started from its bundled weights, with
# the time-reversal loss and the per-element kinetic-energy term on the velocities RATTLE keeps
# (loss.kinetic_energy=300) from the first step: 2000 steps, 2770 s on one thread beside other jobs (split over
# two sessions by --resume), on the third generation of the data (SHA-256 6ea1db2f...). It replaced on
# 2026-12-05 the model of the same recipe without the kinetic-energy term (bundled from 2026-12-04) after two
# full validations and a third NVT run with the 1 ns stability run (stable, no strides rejected): with the
# filter hydrogens -4 / -3 / -4 K and oxygens +8 / +11 / +13 K of reference MD against -7 / +15 K, overall
# 0.0 / +2.2 / +2.7 K against -0.1 K, O-O RDF 2.0 / 1.8 / 2.1 % against 2.2 %, NpT density -1.1 % against
# -1.9 %, -13 / -19 K without the filter against -65 K, NVE 2-3 % of strides as MD against 50 %
# (benchmarks/results/candidates/water-16fs-guess-reversal-ke300p*.json, learning_curves.json; the model
# without the term: the same command without loss.kinetic_energy, its validation in the git history).
openmm-flashmd train "$WORK/water64-rigid-b.h5" "$WORK/water-rigid-16fs-ke" --stride 0.016 \
    --hypers examples/models/water.yaml --set model.verlet_guess=true --set model.d_pet=96 \
    --set model.d_node=192 --set model.d_feedforward=192 \
    --set training.init_from="$WORK/water-rigid-8fs-reversal/model.pt" --set training.learning_rate=3e-4 \
    --set training.warmup_steps=100 --set training.max_steps=2000 --set training.checkpoint_every=250 \
    --set loss.reversal=1.0 --set loss.kinetic_energy=300 --device cpu
# Then 1000 steps from that model with a three-stride rollout loss (loss.rollout=1, rollout_strides=3: before
# each later stride OpenMM constrains the predicted state and computes its Verlet guess on the data's System,
# as the integrator does), the same time-reversal and kinetic-energy terms, lr 1.5e-4 (3282 s on one thread
# beside other jobs, same data). It replaced the model above on 2026-12-05 after four full validations, one
# with the 1 ns stability run (stable, no strides rejected): held-out one-stride H / O position errors 5 / 11 %
# and the four-stride position error 9 % lower; with the filter hydrogens +1 / +6 / +4 / +6 K and oxygens
# -9 / -8 / -2 / -0 K of reference MD against -4 / -3 / -4 and +8 / +11 / +13 K, overall -3.6 / +1.6 / +2.5 /
# +6.3 K against 0.0 / +2.2 / +2.7 K (block SEs about 3 K), without the filter +12 / +7 / +3 / +7 K against
# -13 / -19 K; the blog's NVE run +11.5 / +18.2 K against +13.9 / +16.8 K (its own spread)
# (benchmarks/results/candidates/water-16fs-rollout3*.json, examples/models/candidates/water-rigid-16fs-rollout3/).
openmm-flashmd train "$WORK/water64-rigid-b.h5" "$WORK/water-rigid-16fs-rollout3" --stride 0.016 \
    --hypers examples/models/water.yaml --set model.verlet_guess=true --set model.d_pet=96 \
    --set model.d_node=192 --set model.d_feedforward=192 \
    --set training.init_from="$WORK/water-rigid-16fs-ke/model.pt" --set training.learning_rate=1.5e-4 \
    --set training.warmup_steps=50 --set training.max_steps=1000 --set training.checkpoint_every=250 \
    --set loss.reversal=1.0 --set loss.kinetic_energy=300 --set loss.rollout=1 --set loss.rollout_strides=3 --device cpu
# Then 1000 steps from that model with a four-stride rollout, the same terms and lr (2637 s on one thread beside
# other jobs, same data). It replaced the three-stride model on 2026-12-06: held-out four-stride position error
# 6.52e-3 nm against 6.65e-3; with the filter, over the 950 ps after the measured NVT run of its second full
# validation, hydrogens +1.3 +- 1.1 K and oxygens +0.3 +- 2.4 K of reference MD and overall +0.9 +- 0.8 K
# (the three-stride model's run of the same day: +3.8 / -6.5 / +0.1 K), and in four 100 ps simulate runs
# hydrogens +1.9 / oxygens -0.7 K on average (three-stride: +3.7 / -5.9 K); NpT density -0.7 / -0.1 % in its two
# validations (three-stride: -0.8 to -2.1 % in five), O-O RDF 2.5 / 1.6 % (1.7-2.6 %), the blog's NVE run
# +18.1 / +17.6 K with 12 / 8 % of strides as MD (+11.5 / +18.2 K, 29 / 26 %)
# (benchmarks/results/candidates/water-16fs-rollout4.json, water-16fs-rollout3*.json, learning_curves.json;
# examples/models/candidates/water-rigid-16fs-rollout4/).
openmm-flashmd train "$WORK/water64-rigid-b.h5" "$WORK/water-rigid-16fs" --stride 0.016 \
    --hypers examples/models/water.yaml --set model.verlet_guess=true --set model.d_pet=96 \
    --set model.d_node=192 --set model.d_feedforward=192 \
    --set training.init_from="$WORK/water-rigid-16fs-rollout3/model.pt" --set training.learning_rate=1.5e-4 \
    --set training.warmup_steps=50 --set training.max_steps=1000 --set training.checkpoint_every=250 \
    --set loss.reversal=1.0 --set loss.kinetic_energy=300 --set loss.rollout=1 --set loss.rollout_strides=4 --device cpu
openmm-flashmd evaluate "$WORK/water-rigid-16fs/model.pt" "$WORK/water64-rigid-b.h5" \
    --segments 1,5,13,16,23,27,36,50,67,101,107,114 \
    --json benchmarks/results/held_out/water-rigid-16fs.json --overwrite
# <<< water-rigid-16fs

# >>> water-rigid-4fs
# data: data-water-rigid-8fs
# water-rigid-8fs's network, data and Verlet guess at a 4 fs stride, started from its weights before
# the time-reversal stage (those bundled until 2026-12-04)
# (4184 s: steps 0-1500 on 2 threads, the rest on 1, resumed from checkpoints, the last 2250 with
# max_steps lowered from 6000 to 4000 by --resume --set training.max_steps=4000). Chosen over the
# 8 fs model by the ablation in benchmarks/results/learning_curves.json ("water-rigid-4fs"); this base
# model was bundled as water-rigid-4fs until 2026-12-04.
openmm-flashmd train "$WORK/water64-rigid-b.h5" "$WORK/water-rigid-4fs-base" --stride 0.004 \
    --hypers examples/models/water.yaml --set model.verlet_guess=true --set model.d_pet=96 \
    --set model.d_node=192 --set model.d_feedforward=192 \
    --set training.init_from="$WORK/water-rigid-8fs-ft/model.pt" --set training.learning_rate=3e-4 \
    --set training.warmup_steps=100 --set training.max_steps=4000 --set training.checkpoint_every=250 --device cpu
# Then 1500 steps with the time-reversal loss (loss.reversal=1) from that model (2565 s on one thread
# beside two other jobs, on the third generation of the data, SHA-256 6ea1db2f...): chosen by the ablation in
# benchmarks/results/learning_curves.json (20 ps NVT: H +2.3 / O -7.7 K from reference MD, the base model's
# +6.5 / -16.9 K) and its full validation (with the filter H +5.4 / O -5.9 K, the base model's +7.3 / -11.5 K).
openmm-flashmd train "$WORK/water64-rigid-b.h5" "$WORK/water-rigid-4fs" --stride 0.004 \
    --hypers examples/models/water.yaml --set model.verlet_guess=true --set model.d_pet=96 \
    --set model.d_node=192 --set model.d_feedforward=192 \
    --set training.init_from="$WORK/water-rigid-4fs-base/model.pt" --set training.learning_rate=3e-4 \
    --set training.warmup_steps=100 --set training.max_steps=1500 --set training.checkpoint_every=250 \
    --set loss.reversal=1.0 --device cpu
openmm-flashmd evaluate "$WORK/water-rigid-4fs/model.pt" "$WORK/water64-rigid-b.h5" \
    --segments 1,5,13,16,23,27,36,50,67,101,107,114 \
    --json benchmarks/results/held_out/water-rigid-4fs.json --overwrite
# <<< water-rigid-4fs

# >>> data-alanine-dipeptide-implicit-hbonds
openmm-flashmd generate --system alanine-dipeptide-implicit-hbonds --timestep 0.001 --n-segments 200 \
    --segment-length 0.5 --decorrelate 1 --thermalize 20 --seed 3 --platform CPU "$WORK/ala-hbonds.h5"
python examples/models/reference_temperatures.py "$WORK/ala-hbonds.h5" \
    openmm_flashmd/systems/data/alanine-dipeptide-implicit-hbonds-reference.json --overwrite
# <<< data-alanine-dipeptide-implicit-hbonds

# >>> data-alanine-dipeptide-implicit-hbonds-1000
# five times the segments of the block above (24 min on one thread)
openmm-flashmd generate --system alanine-dipeptide-implicit-hbonds --timestep 0.001 --n-segments 1000 \
    --segment-length 0.5 --decorrelate 1 --thermalize 20 --seed 3 --platform CPU "$WORK/ala-hbonds-1000.h5"
# <<< data-alanine-dipeptide-implicit-hbonds-1000

# >>> alanine-dipeptide-implicit-hbonds-8fs
# data: data-alanine-dipeptide-implicit-hbonds-1000
# A PET correcting the multiple-time-step Verlet guess: bonded forces (bonds, angles, torsions) recomputed at each
# of 4 substeps of 2 fs, the nonbonded and GB forces frozen at the start of the stride (model.guess_fast_forces;
# the guess alone is 18-49x closer to reference MD than the frozen-force guess, benchmarks/results/guess_errors-*.json).
# alanine.yaml widened (d_pet 96, d_node and d_feedforward 192), 6000 steps from scratch (988 s on one thread beside
# another job). It replaced on 2026-12-08 the free-flight model bundled since 2026-12-05 (12000 steps, then 3000 +
# 4 x 2000 steps of two- to five-stride rollout losses; in git history): held-out position
# errors 11-16x lower, Ramachandran JS 0.012 against 0.098 over 1 ns, with the filter every element within 13 K of
# reference MD (before: oxygens +60 K) (examples/models/candidates/alanine-mts-guess/, learning_curves.json).
openmm-flashmd train "$WORK/ala-hbonds-1000.h5" "$WORK/alanine-dipeptide-implicit-hbonds-8fs" --stride 0.008 \
    --hypers examples/models/alanine.yaml --set model.d_pet=96 --set model.d_node=192 \
    --set model.d_feedforward=192 --set model.verlet_guess=true --set model.guess_substeps=4 \
    --set 'model.guess_fast_forces=[HarmonicBondForce, HarmonicAngleForce, PeriodicTorsionForce]' \
    --set training.max_steps=6000 --set training.checkpoint_every=250 --device cpu
openmm-flashmd evaluate "$WORK/alanine-dipeptide-implicit-hbonds-8fs/model.pt" "$WORK/ala-hbonds-1000.h5" \
    --json benchmarks/results/held_out/alanine-dipeptide-implicit-hbonds-8fs.json --overwrite
# <<< alanine-dipeptide-implicit-hbonds-8fs

# >>> alanine-dipeptide-implicit-hbonds-16fs
# data: data-alanine-dipeptide-implicit-hbonds-1000
# The 8 fs block's recipe at 16 fs (the multiple-time-step guess in 8 substeps of 2 fs; 6000 steps from scratch,
# 16 min on one thread beside another job), then 2000 steps with a two-stride rollout loss (lr 3e-4; 700 s on one
# thread beside two other jobs): the first stage alone had held-out errors 6-7x below the free-flight 16 fs model's
# but ran stuck in beta/PPII (JS 0.19) and exploded without the filter at 51 ps. It replaced on 2026-12-08 the
# free-flight model (the free-flight 8 fs base fine-tuned at 16 fs; in git history): Ramachandran JS 0.035 against
# 0.21 over 1 ns, with the filter worst element O -42 K (before O +80 K), NVE +23 K (before +159 K)
# (examples/models/candidates/alanine-mts-guess/, learning_curves.json).
openmm-flashmd train "$WORK/ala-hbonds-1000.h5" "$WORK/alanine-dipeptide-implicit-hbonds-16fs-base" --stride 0.016 \
    --hypers examples/models/alanine.yaml --set model.d_pet=96 --set model.d_node=192 \
    --set model.d_feedforward=192 --set model.verlet_guess=true --set model.guess_substeps=8 \
    --set 'model.guess_fast_forces=[HarmonicBondForce, HarmonicAngleForce, PeriodicTorsionForce]' \
    --set training.max_steps=6000 --set training.checkpoint_every=250 --device cpu
openmm-flashmd train "$WORK/ala-hbonds-1000.h5" "$WORK/alanine-dipeptide-implicit-hbonds-16fs" --stride 0.016 \
    --hypers examples/models/alanine.yaml --set model.d_pet=96 --set model.d_node=192 \
    --set model.d_feedforward=192 --set model.verlet_guess=true --set model.guess_substeps=8 \
    --set 'model.guess_fast_forces=[HarmonicBondForce, HarmonicAngleForce, PeriodicTorsionForce]' \
    --set training.init_from="$WORK/alanine-dipeptide-implicit-hbonds-16fs-base/model.pt" \
    --set training.learning_rate=3e-4 --set training.warmup_steps=100 --set training.max_steps=2000 \
    --set training.checkpoint_every=250 --set loss.rollout=1 --set loss.rollout_strides=2 --device cpu
openmm-flashmd evaluate "$WORK/alanine-dipeptide-implicit-hbonds-16fs/model.pt" "$WORK/ala-hbonds-1000.h5" \
    --json benchmarks/results/held_out/alanine-dipeptide-implicit-hbonds-16fs.json --overwrite
# <<< alanine-dipeptide-implicit-hbonds-16fs

# Validation against reference MD (writes benchmarks/results/validation/), then the cards
# quote it: bundle once, validate, bundle again.
for name in water-rigid-16fs water-rigid-8fs water-rigid-4fs alanine-dipeptide-implicit-hbonds-8fs \
        alanine-dipeptide-implicit-hbonds-16fs; do
    python examples/models/bundle.py "$name" "$WORK/$name" --overwrite
done
for name in water-rigid-16fs water-rigid-8fs water-rigid-4fs alanine-dipeptide-implicit-hbonds-8fs \
        alanine-dipeptide-implicit-hbonds-16fs; do
    python benchmarks/validate.py run "$name" --threads 1 --overwrite
done
# the default model at other Langevin frictions (README friction table)
python benchmarks/validate.py friction water-rigid-16fs --threads 2 --overwrite
python benchmarks/blog_nve.py water-rigid-16fs --threads 1 --overwrite   # the blog's 258-water NVE protocol
python benchmarks/blog_nve.py water-rigid-8fs --threads 1 --overwrite
python benchmarks/validate.py summarize
python benchmarks/report.py
for name in water-rigid-16fs water-rigid-8fs water-rigid-4fs alanine-dipeptide-implicit-hbonds-8fs \
        alanine-dipeptide-implicit-hbonds-16fs; do
    python examples/models/bundle.py "$name" "$WORK/$name" --overwrite
done
