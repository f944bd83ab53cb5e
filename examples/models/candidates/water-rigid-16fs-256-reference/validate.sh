#!/bin/bash
# Full validation of the candidate (64-water box, the validation's own lengths, NpT 400 ps as the default's), resumable:
#   OMP_NUM_THREADS=1 bash examples/models/candidates/water-rigid-16fs-256-reference/validate.sh
# The result goes to bundled-work/w256ref-val-out/water-16fs-256-reference.json (copy it to benchmarks/results/candidates/).
set -euo pipefail
python benchmarks/validate.py run examples/models/candidates/water-rigid-16fs-256-reference.pt --system water-rigid \
    --name water-16fs-256-reference --out bundled-work/w256ref-val-out --work-dir bundled-work/w256ref-val-work \
    --set npt_ps=400 --threads 1 --no-progress --no-stability --resume "$@"
