#!/bin/bash
# `openmm-flashmd train DATA OUT ARGS...` on the CPU that continues from OUT/checkpoint.pt when one exists, so that a
# candidate's run.sh can simply be run again after any stop (sessions end; the checkpoint keeps the schedule).
set -euo pipefail
DATA=$1
OUT=$2
shift 2
RESUME=()
if test -f "$OUT/checkpoint.pt"; then RESUME=(--resume); fi
exec openmm-flashmd train "$DATA" "$OUT" --device cpu --quiet "$@" "${RESUME[@]}"
