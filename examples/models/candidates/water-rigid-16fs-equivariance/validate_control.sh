#!/bin/bash
# The control's validation (50 ps windows, no stability run; 20 min on one thread beside other jobs), its JSON copied to
# benchmarks/results/candidates/water-16fs-equivariance-control.json (the water-rigid reference of
# benchmarks/results/validation/ copied into --out first).
set -euo pipefail
python benchmarks/validate.py run examples/models/candidates/water-rigid-16fs-equivariance-control.pt --system water-rigid --name water-16fs-equivariance-control --out bundled-work/eqc-val-out --work-dir bundled-work/eqc-val-work --threads 1 --no-progress --no-stability --resume
