#!/bin/bash
# Validation of the multiple-time-step guess alone (no learned part) on alanine dipeptide (HBonds) at 8 fs,
# as the bundled 8 fs model's without the stability run:
#   OMP_NUM_THREADS=1 bash examples/models/candidates/alanine-mts-guess/validate_guess_only.sh
# (the 2 ns reference MD is read from a copy of benchmarks/results/validation/reference-alanine-dipeptide-implicit-hbonds.*
# in the --out folder).
set -euo pipefail
mkdir -p bundled-work/ala-mts-out
cp -n benchmarks/results/validation/reference-alanine-dipeptide-implicit-hbonds.* bundled-work/ala-mts-out/
python examples/models/candidates/alanine-mts-guess/make_guess_only.py bundled-work/alanine-8fs-mts-guess-only.pt
python benchmarks/validate.py run bundled-work/alanine-8fs-mts-guess-only.pt \
    --system alanine-dipeptide-implicit-hbonds --name alanine-8fs-mts-guess-only --out bundled-work/ala-mts-out \
    --work-dir bundled-work/ala-mts-work-guess-only --threads 1 --no-progress --no-stability --resume
