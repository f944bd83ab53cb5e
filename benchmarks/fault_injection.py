"""Kill `simulate`, `generate` and `train` at random moments, resume, and compare with an uninterrupted run.

    python benchmarks/fault_injection.py [--faults 20] [--commands simulate generate train] [--seed 0]

For each command an uninterrupted reference run is made first. Then, per signal (SIGKILL,
SIGINT), the same job is started in a fresh folder and killed at a random moment (uniform
between 0.5 s and 1.2 x the reference's wall time) until ``--faults`` signals have hit a running
process (a signal after the job finished starts it again from scratch), each time resumed
with the command's ``--resume`` (or, when the command says so because the job stopped before
anything could be resumed, started again with ``--overwrite``, as a user would); after the
last fault it is resumed to completion. The
finished outputs must equal the reference's: simulate's trajectory (bit-identical positions
read with mdtraj, same frame count) and log, generate's HDF5 datasets, train's model weights
and log. Every process runs with one thread; simulate on the Reference platform, generate on
the CPU platform (its Langevin stretches are seeded per segment there; the Reference platform
draws them from one process-wide stream, so a resumed generate is not bitwise reproducible on it).
Writes ``benchmarks/results/fault_injection.json``: faults injected per command and signal,
exit codes seen, resumes that failed, whether the finished outputs are identical, and the
data lost (outputs missing or different: must be 0).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Tuple

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import CLI, single_thread_env, stack_info, write_json  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "fault_injection.json"



def _simulate(out: Path, data: Path) -> List[str]:
    return CLI + ["simulate", str(out / "run"), "--system", "water-rigid", "--platform", "Reference", "--time", "0.8",
                  "--report-interval", "0.032", "--seed", "3", "--quiet"]


def _simulate_resume(out: Path, data: Path) -> List[str]:
    return CLI + ["simulate", str(out / "run"), "--resume", "--platform", "Reference", "--quiet"]


def _generate(out: Path, data: Path) -> List[str]:
    return CLI + ["generate", str(out / "data.h5"), "--system", "argon", "--n-segments", "12", "--segment-length",
                  "0.4", "--thermalize", "0.5", "--decorrelate", "0.2", "--platform", "CPU", "--seed", "1",
                  "--quiet"]


def _generate_resume(out: Path, data: Path) -> List[str]:
    return CLI + ["generate", str(out / "data.h5"), "--resume", "--quiet"]


def _train(out: Path, data: Path) -> List[str]:
    return CLI + ["train", str(data), str(out / "model"), "--stride", "0.016", "--device", "cpu", "--quiet",
                  "--set", "training.max_steps=120", "--set", "training.checkpoint_every=10",
                  "--set", "training.validate_every=20", "--set", "model.d_pet=16", "--set", "model.d_node=16",
                  "--set", "model.d_feedforward=16"]


def _train_resume(out: Path, data: Path) -> List[str]:
    return _train(out, data) + ["--resume"]


def _same_simulate(a: Path, b: Path) -> Dict:
    import mdtraj

    ta = mdtraj.load(str(a / "run" / "trajectory.dcd"), top=str(a / "run" / "topology.pdb"))
    tb = mdtraj.load(str(b / "run" / "trajectory.dcd"), top=str(b / "run" / "topology.pdb"))
    log_same = (a / "run" / "log.csv").read_text() == (b / "run" / "log.csv").read_text()
    return {"frames": [ta.n_frames, tb.n_frames], "positions_identical": bool(ta.n_frames == tb.n_frames
                                                                              and np.array_equal(ta.xyz, tb.xyz)),
            "log_identical": log_same}


def _same_generate(a: Path, b: Path) -> Dict:
    import h5py

    with h5py.File(a / "data.h5", "r") as fa, h5py.File(b / "data.h5", "r") as fb:
        names = sorted(k for k in fa.keys() if isinstance(fa[k], h5py.Dataset))
        different = [k for k in names if k not in fb or not np.array_equal(fa[k][()], fb[k][()])]
    return {"datasets": len(names), "different_datasets": different, "identical": not different}


def _same_train(a: Path, b: Path) -> Dict:
    import torch

    ma, mb = (torch.jit.load(str(p / "model" / "model.pt")) for p in (a, b))
    sa, sb = ma.state_dict(), mb.state_dict()
    weights = sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    # the last column (wall_s) differs between runs: compare everything else
    la, lb = ([line.rsplit(",", 1)[0] for line in (p / "model" / "log.csv").read_text().splitlines()] for p in (a, b))
    return {"weights_identical": bool(weights), "log_identical": la == lb, "log_rows": [len(la), len(lb)]}


JOBS: Dict[str, Dict[str, Callable]] = {
    "simulate": {"start": _simulate, "resume": _simulate_resume, "compare": _same_simulate},
    "generate": {"start": _generate, "resume": _generate_resume, "compare": _same_generate},
    "train": {"start": _train, "resume": _train_resume, "compare": _same_train},
}


def _run(command: List[str], timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=single_thread_env())


def _killed_run(command: List[str], after: float, sig: int) -> Tuple[int, str]:
    """Start ``command``, send ``sig`` after ``after`` s (unless it finished); return its exit code."""
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=single_thread_env())
    try:
        proc.wait(timeout=after)
    except subprocess.TimeoutExpired:
        proc.send_signal(sig)
    try:
        _, err = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    return proc.returncode, (err or "")[-500:]


def run_job(name: str, work: Path, data: Path, faults: int, rng: random.Random) -> Dict:
    job = JOBS[name]
    reference = work / f"{name}-reference"
    reference.mkdir()
    started = time.perf_counter()
    done = _run(job["start"](reference, data))
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"the uninterrupted {name} run failed: {done.stderr[-2000:]}")
    result = {"reference_wall_s": wall}
    for sig_name, sig in (("SIGKILL", signal.SIGKILL), ("SIGINT", signal.SIGINT)):
        out = work / f"{name}-{sig_name}"
        out.mkdir()
        codes, unexpected, injected, restarts = {}, [], 0, 0
        command = job["start"](out, data)
        sent = 0
        while injected < faults and sent < 4 * faults:
            sent += 1
            code, err = _killed_run(command, rng.uniform(0.5, 1.2 * wall), sig)
            codes[str(code)] = codes.get(str(code), 0) + 1
            if code == 0:  # finished before the signal: start the job again in an empty folder
                shutil.rmtree(out)
                out.mkdir()
                command = job["start"](out, data)
                continue
            injected += code in (-signal.SIGKILL, -signal.SIGINT, 130)
            if code == 1 and "start again" in err:  # stopped before anything resumable: the advice is to restart
                restarts += 1
                command = job["start"](out, data) + ["--overwrite"]
                continue
            if code not in (-signal.SIGKILL, -signal.SIGINT, 130):
                unexpected.append(err.strip().splitlines()[-1] if err.strip() else f"exit {code}")
            command = job["resume"](out, data)
        final = _run(command)
        if final.returncode == 1 and "start again" in final.stderr:
            restarts += 1
            final = _run(job["start"](out, data) + ["--overwrite"])
        if final.returncode != 0:
            unexpected.append(final.stderr.strip().splitlines()[-1] if final.stderr.strip() else "final run failed")
            comparison = {"finished": False}
        else:
            comparison = dict(job["compare"](reference, out), finished=True)
        identical = comparison.get("finished", False) and all(
            v for k, v in comparison.items() if k.endswith("identical"))
        result[sig_name] = {"signals_sent": sent, "faults_injected": injected, "exit_codes": codes,
                            "restarts_advised": restarts, "unexpected_errors": unexpected, "comparison": comparison,
                            "identical": identical}
        print(f"{name} {sig_name}: {injected} faults injected, {restarts} restarts advised, identical={identical}, "
              f"unexpected errors={len(unexpected)}", flush=True)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--faults", type=int, default=20, help="faults to inject per command and signal kind")
    parser.add_argument("--commands", nargs="+", default=list(JOBS), choices=list(JOBS))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    started = time.perf_counter()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = work / "generate-reference" / "data.h5"
        order = [c for c in ("generate", "simulate", "train") if c in args.commands]
        if "train" in order and "generate" not in order:  # train needs data
            ref = work / "generate-reference"
            ref.mkdir()
            _run(_generate(ref, data))
        for name in order:
            results[name] = run_job(name, work, data, args.faults, rng)
    runs = [r[s] for r in results.values() for s in ("SIGKILL", "SIGINT")]
    summary = {
        "faults_injected": sum(r["faults_injected"] for r in runs),
        "resumed_runs_identical": sum(bool(r["identical"]) for r in runs),
        "resumed_runs": len(runs),
        "data_lost": sum(not r["identical"] for r in runs),
        "unexpected_errors": sum(len(r["unexpected_errors"]) for r in runs),
    }
    write_json(OUT, {"benchmark": "fault_injection", "summary": summary, "commands": results, "faults_per_signal": args.faults, "seed": args.seed,
                     "wall_s": time.perf_counter() - started, "threads": 1,
                     "platforms": {"simulate": "Reference", "generate": "CPU"},
                     "stack": stack_info()}, overwrite=True)
    print(json.dumps(summary))
    return 0 if summary["data_lost"] == 0 and summary["unexpected_errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
