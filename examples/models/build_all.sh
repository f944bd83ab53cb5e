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

# >>> data-water
openmm-flashmd generate --system water --n-segments 60 --segment-length 1.0 --seed 1 \
    --platform CPU "$WORK/water64.h5"
# <<< data-water

# >>> data-water-rigid
openmm-flashmd generate --system water-rigid --timestep 0.001 --n-segments 60 --segment-length 1.0 --seed 1 \
    --platform CPU "$WORK/water64-rigid.h5"
# <<< data-water-rigid

# >>> data-alanine-dipeptide-implicit
openmm-flashmd generate --system alanine-dipeptide-implicit --n-segments 120 --segment-length 1.0 \
    --decorrelate 2 --thermalize 20 --platform CPU "$WORK/ala-implicit.h5"
# <<< data-alanine-dipeptide-implicit

# >>> water-16fs
openmm-flashmd train "$WORK/water64.h5" "$WORK/water-16fs" --stride 0.016 --hypers examples/models/water.yaml \
    --set training.max_steps=5000 --device cpu
openmm-flashmd evaluate "$WORK/water-16fs/model.pt" "$WORK/water64.h5" \
    --json benchmarks/results/held_out/water-16fs.json --overwrite
# <<< water-16fs

# >>> water-8fs
openmm-flashmd train "$WORK/water64.h5" "$WORK/water-8fs" --stride 0.008 --hypers examples/models/water.yaml \
    --set training.max_steps=3000 --device cpu
openmm-flashmd evaluate "$WORK/water-8fs/model.pt" "$WORK/water64.h5" \
    --json benchmarks/results/held_out/water-8fs.json --overwrite
# <<< water-8fs

# >>> water-rigid-16fs
openmm-flashmd train "$WORK/water64-rigid.h5" "$WORK/water-rigid-16fs" --stride 0.016 \
    --hypers examples/models/water.yaml --set training.max_steps=3500 --device cpu
openmm-flashmd evaluate "$WORK/water-rigid-16fs/model.pt" "$WORK/water64-rigid.h5" \
    --json benchmarks/results/held_out/water-rigid-16fs.json --overwrite
# <<< water-rigid-16fs

# >>> water-4fs
openmm-flashmd train "$WORK/water64.h5" "$WORK/water-4fs" --stride 0.004 --hypers examples/models/water.yaml \
    --set training.max_steps=2500 --device cpu
openmm-flashmd evaluate "$WORK/water-4fs/model.pt" "$WORK/water64.h5" \
    --json benchmarks/results/held_out/water-4fs.json --overwrite
# <<< water-4fs

# >>> alanine-dipeptide-implicit-8fs
openmm-flashmd train "$WORK/ala-implicit.h5" "$WORK/alanine-dipeptide-implicit-8fs" --stride 0.008 \
    --hypers examples/models/alanine.yaml --set training.max_steps=5000 --device cpu
openmm-flashmd evaluate "$WORK/alanine-dipeptide-implicit-8fs/model.pt" "$WORK/ala-implicit.h5" \
    --json benchmarks/results/held_out/alanine-dipeptide-implicit-8fs.json --overwrite
# <<< alanine-dipeptide-implicit-8fs

# >>> alanine-dipeptide-implicit-4fs
openmm-flashmd train "$WORK/ala-implicit.h5" "$WORK/alanine-dipeptide-implicit-4fs" --stride 0.004 \
    --hypers examples/models/alanine.yaml --set training.max_steps=4000 --device cpu
openmm-flashmd evaluate "$WORK/alanine-dipeptide-implicit-4fs/model.pt" "$WORK/ala-implicit.h5" \
    --json benchmarks/results/held_out/alanine-dipeptide-implicit-4fs.json --overwrite
# <<< alanine-dipeptide-implicit-4fs

# Validation against reference MD (writes benchmarks/results/validation/), then the cards
# quote it: bundle once, validate, bundle again.
for name in water-rigid-16fs water-16fs water-8fs water-4fs alanine-dipeptide-implicit-8fs alanine-dipeptide-implicit-4fs; do
    python examples/models/bundle.py "$name" "$WORK/$name" --overwrite
done
for name in water-rigid-16fs water-16fs water-8fs water-4fs alanine-dipeptide-implicit-8fs alanine-dipeptide-implicit-4fs; do
    python benchmarks/validate.py run "$name" --threads 1 --overwrite
done
# the default model at other Langevin frictions (README friction table, friction100 row)
python benchmarks/validate.py friction water-rigid-16fs --threads 2 --overwrite
python benchmarks/validate.py run water-rigid-16fs --system water-rigid --name water-rigid-16fs-friction100 \
    --collision-rate 100 --stability --threads 2 --overwrite
python benchmarks/validate.py summarize
python benchmarks/report.py
for name in water-rigid-16fs water-16fs water-8fs water-4fs alanine-dipeptide-implicit-8fs alanine-dipeptide-implicit-4fs; do
    python examples/models/bundle.py "$name" "$WORK/$name" --overwrite
done
