#!/bin/bash
# Validation of a candidate of run.sh (NAME=alanine-8fs-mts-guess or alanine-16fs-mts-guess), as the bundled
# models' without the stability run:
#   NAME=alanine-8fs-mts-guess WORK=bundled-work OMP_NUM_THREADS=1 bash examples/models/candidates/alanine-mts-guess/validate.sh
# (the 2 ns reference MD is read from a copy of benchmarks/results/validation/reference-alanine-dipeptide-implicit-hbonds.*
# in the --out folder).
set -euo pipefail
WORK=${WORK:-bundled-work}
mkdir -p "$WORK/ala-mts-out"
cp -n benchmarks/results/validation/reference-alanine-dipeptide-implicit-hbonds.* "$WORK/ala-mts-out/"
python benchmarks/validate.py run "$WORK/$NAME/model.pt" \
    --system alanine-dipeptide-implicit-hbonds --name "$NAME" --out "$WORK/ala-mts-out" \
    --work-dir "$WORK/ala-mts-work-$NAME" --threads 1 --no-progress --no-stability --resume
