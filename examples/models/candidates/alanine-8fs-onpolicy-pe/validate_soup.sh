#!/bin/bash
# Validation of one alanine 8 fs weight average of soup.sh (NAME = plain | rollout2), as the bundled 8 fs model's:
#   NAME=rollout2 OMP_NUM_THREADS=1 bash examples/models/candidates/alanine-8fs-onpolicy-pe/validate_soup.sh
# (the 2 ns reference MD is read from a copy of benchmarks/results/validation/reference-alanine-dipeptide-implicit-hbonds.*
# in the --out folder; its JSON was copied to benchmarks/results/candidates/).
set -euo pipefail
python benchmarks/validate.py run "examples/models/candidates/alanine-8fs-soup-$NAME-0.5.pt" \
    --system alanine-dipeptide-implicit-hbonds --name "alanine-8fs-soup-$NAME-0.5" --out bundled-work/ala-soup-out \
    --work-dir "bundled-work/ala-soup-work-$NAME" --threads 1 --no-progress --no-stability --resume
