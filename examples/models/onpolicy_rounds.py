"""Iterated on-policy fine-tuning (dataset aggregation) of a stride model, resumable round by round.

    python examples/models/onpolicy_rounds.py START_MODEL DATA WORK_DIR --stride 0.008 --system water-rigid
        [--rounds 4] [--segments 600] [--segment-length 0.024] [--steps 1500] [--hypers FILE]
        [--set SECTION.KEY=VALUE ...] [--judge-ps 20] [--judge-seeds 1 2]

Round k: ``onpolicy_data`` runs the newest model (round k-1, or ``START_MODEL``) from frames of
``DATA`` and records reference MD from the states it visits (``WORK_DIR/round-k.h5``), then
``openmm-flashmd train`` fine-tunes the newest model (``training.init_from``) on the on-policy
files of all rounds so far (``WORK_DIR/round-k/``), then each new model is judged by short NVT
runs of ``openmm-flashmd simulate`` on the built-in ``--system`` (per-element temperatures of the
second half, one run per seed). Every round's result goes to ``WORK_DIR/rounds.json``. A rerun
skips what is finished and resumes an interrupted training, so the same command continues
across sessions. Units: ps, K.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from learning_curves import dynamics  # noqa: E402


def run(command: List[str]) -> None:
    print("+", " ".join(command), flush=True)
    subprocess.run(command, check=True)


def onpolicy_round(model: Path, data: Path, output: Path, segments: int, segment_length: float, seed: int) -> None:
    """Write ``output`` atomically: a partial file of an interrupted round is regenerated."""
    from openmm_flashmd.data.onpolicy import onpolicy_data

    if output.exists():
        return
    partial = output.with_name(output.stem + ".partial.h5")
    partial.unlink(missing_ok=True)
    onpolicy_data(str(model), data, partial, segments, seed=seed, segment_length=segment_length)
    os.replace(partial, output)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("start_model", type=Path)
    parser.add_argument("data", type=Path, help="reference trajectory file the start model was trained on")
    parser.add_argument("work_dir", type=Path)
    parser.add_argument("--stride", required=True)
    parser.add_argument("--system", required=True, help="built-in system for the judging runs")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--segments", type=int, default=600)
    parser.add_argument("--segment-length", type=float, default=0.024, help="ps")
    parser.add_argument("--steps", type=int, default=1500, help="training steps per round")
    parser.add_argument("--hypers", type=Path, default=None)
    parser.add_argument("--set", action="append", default=[], dest="overrides")
    parser.add_argument("--judge-ps", type=float, default=20.0)
    parser.add_argument("--judge-seeds", type=int, nargs="*", default=[1, 2])
    args = parser.parse_args(argv)

    args.work_dir.mkdir(parents=True, exist_ok=True)
    record_path = args.work_dir / "rounds.json"
    record = json.loads(record_path.read_text()) if record_path.exists() else {}
    model = args.start_model
    for k in range(1, args.rounds + 1):
        data_k = args.work_dir / f"round-{k}.h5"
        onpolicy_round(model, args.data, data_k, args.segments, args.segment_length, seed=100 + k)
        out = args.work_dir / f"round-{k}"
        if not (out / "model.pt").exists():
            command = ["openmm-flashmd", "train", *[str(args.work_dir / f"round-{j}.h5") for j in range(1, k + 1)],
                       str(out), "--stride", args.stride, "--device", "cpu", "--quiet",
                       "--set", f"training.init_from={model}", "--set", f"training.max_steps={args.steps}"]
            command += ["--hypers", str(args.hypers)] if args.hypers else []
            for item in args.overrides:
                command += ["--set", item]
            command += ["--resume"] if (out / "checkpoint.pt").exists() else []
            run(command)
        model = out / "model.pt"
        if str(k) not in record:
            judged = [dynamics(model, args.system, args.judge_ps, threads=None, seed=seed) for seed in args.judge_seeds]
            record[str(k)] = {"model": str(model), "judge": judged}
            tmp = record_path.with_suffix(".tmp")
            tmp.write_text(json.dumps(record, indent=1))
            os.replace(tmp, record_path)
            for j in judged:
                print(f"round {k} seed: T {j['temperature_second_half_K']} failure {j['failure']}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
