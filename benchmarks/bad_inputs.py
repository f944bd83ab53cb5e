"""Feed the CLI the bad inputs a new user stumbles on and record what each gets.

    python benchmarks/bad_inputs.py

Each case runs ``openmm-flashmd`` in a fresh process (one thread) on prepared files: a good
short argon run to resume, corrupt model and data files, a truncated checkpoint, a model
whose outputs break the protocol, and so on. Recorded per case: the exit status, the number
of stderr lines, its last line, and whether the case is handled (a non-zero exit with a
one-line message and no traceback, and no change to the files of an existing run). Writes
``benchmarks/results/bad_inputs.json``.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from _common import CLI, single_thread_env, stack_info, write_json  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "bad_inputs.json"


def _digest(folder: Path) -> str:
    """Hash of every file in ``folder`` (nothing may change when a bad input is refused)."""
    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != ".lock"):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def prepare(work: Path) -> Dict[str, Path]:
    """Files the cases use."""
    from openmm_flashmd import save_model
    from openmm_flashmd.model import FreeParticleStrideModel
    from toy_models import BadOutputModel

    files = {"free": save_model(FreeParticleStrideModel(0.002), work / "free.pt"),
             "broadcast": save_model(BadOutputModel(0.002, "broadcast"), work / "broadcast.pt"),
             "raising": save_model(BadOutputModel(0.002, "raise"), work / "raising.pt")}
    (work / "garbage.pt").write_bytes(os.urandom(2000))
    (work / "empty.pt").write_bytes(b"")
    (work / "garbage.xml").write_text("<System><Particles>")
    (work / "garbage.h5").write_bytes(os.urandom(4000))
    (work / "bad.yaml").write_text("model:\n  cutoff: [0.3\n")
    (work / "a-file").write_text("")
    files.update({name: work / name for name in ("garbage.pt", "empty.pt", "garbage.xml", "garbage.h5", "bad.yaml",
                                                  "a-file")})
    env = single_thread_env()
    run = work / "run"
    subprocess.run(CLI + ["simulate", str(run), "--system", "argon", "--model", str(files["free"]), "--time", "0.04",
                          "--report-interval", "0.01", "--platform", "Reference", "--quiet"], check=True, env=env,
                   capture_output=True)
    truncated = work / "truncated"
    subprocess.run(["cp", "-r", str(run), str(truncated)], check=True)
    data = (truncated / "checkpoint.chk").read_bytes()
    (truncated / "checkpoint.chk").write_bytes(data[: len(data) // 2])
    foreign = work / "foreign"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("precious")
    files.update({"run": run, "truncated": truncated, "foreign": foreign})
    return files


def cases(f: Dict[str, Path], work: Path) -> List[Tuple[str, List[str], Path]]:
    """(description, arguments, folder that must not change or None)."""
    new = str(work / "new")
    sim = ["simulate", new, "--quiet", "--platform", "Reference"]
    argon = ["--system", "argon", "--model", str(f["free"])]
    run = str(f["run"])
    return [
        ("simulate --time -1", sim + ["--time", "-1"], None),
        ("simulate --time nan", sim + ["--time", "nan"], None),
        ("simulate --report-interval -1", sim + ["--report-interval", "-1"], None),
        ("simulate --collision-rate -5", sim + ["--collision-rate", "-5"], None),
        ("simulate --temperature -50", sim + ["--temperature", "-50"], None),
        ("simulate --seed -3", sim + ["--seed", "-3"], None),
        ("simulate --fallback-timestep 0", sim + ["--fallback-timestep", "0"], None),
        ("simulate with an unknown model name", sim + ["--model", "water-3fs"], None),
        ("simulate with a model file of random bytes", sim + ["--model", str(f["garbage.pt"])], None),
        ("simulate with an empty model file", sim + ["--model", str(f["empty.pt"])], None),
        ("simulate with a model returning velocities of shape [3]", sim + ["--system", "argon", "--model",
                                                                            str(f["broadcast"])], None),
        ("simulate with a model that raises", sim + ["--system", "argon", "--model", str(f["raising"])], None),
        ("simulate with a corrupt System XML", sim + ["--system", str(f["garbage.xml"]), "--model", str(f["free"])],
         None),
        ("simulate with an unknown built-in system", sim + ["--system", "watre", "--model", str(f["free"])], None),
        ("simulate with splitting 'F F'", sim + argon + ["--splitting", "F F"], None),
        ("simulate with splitting 'O F E B'", sim + argon + ["--splitting", "O F E B"], None),
        ("simulate npt on a non-periodic System", sim + ["--system", "alanine-dipeptide-implicit-hbonds",
                                                         "--ensemble", "npt"], None),
        ("simulate into an existing run without flags", ["simulate", run, "--quiet"] + argon, f["run"]),
        ("simulate --overwrite on a folder holding other files", ["simulate", str(f["foreign"]), "--overwrite",
                                                                  "--quiet"] + argon, f["foreign"]),
        ("simulate into a path below a file", ["simulate", str(f["a-file"] / "run"), "--quiet"] + argon, None),
        ("simulate --resume of a folder that does not exist", ["simulate", str(work / "nowhere"), "--resume",
                                                              "--quiet"], None),
        ("simulate --resume with a truncated checkpoint", ["simulate", str(f["truncated"]), "--resume", "--time",
                                                           "0.08", "--quiet"], f["truncated"]),
        ("simulate --resume --temperature 150 (the run has 120)", ["simulate", run, "--resume", "--temperature",
                                                                   "150", "--quiet"], f["run"]),
        ("simulate --resume --system water-rigid (the run is argon)", ["simulate", run, "--resume", "--system",
                                                                       "water-rigid", "--quiet"], f["run"]),
        ("simulate --resume --model water-rigid-16fs (another model)", ["simulate", run, "--resume", "--model",
                                                                        "water-rigid-16fs", "--quiet"], f["run"]),
        ("generate without a system", ["generate", str(work / "g.h5"), "--quiet"], None),
        ("generate --resume of a file that does not exist", ["generate", str(work / "g.h5"), "--resume"], None),
        ("generate --resume of a random-bytes file", ["generate", str(f["garbage.h5"]), "--resume"], None),
        ("generate --n-segments 0", ["generate", str(work / "g.h5"), "--system", "argon", "--n-segments", "0"],
         None),
        ("generate --timestep -0.001", ["generate", str(work / "g.h5"), "--system", "argon", "--timestep",
                                        "-0.001"], None),
        ("train on a missing data file", ["train", str(work / "missing.h5"), str(work / "t"), "--stride", "0.016"],
         None),
        ("train on a random-bytes data file", ["train", str(f["garbage.h5"]), str(work / "t"), "--stride", "0.016"],
         None),
        ("train with a YAML syntax error", ["train", str(f["garbage.h5"]), str(work / "t"), "--stride", "0.016",
                                           "--hypers", str(f["bad.yaml"])], None),
        ("train --set without '='", ["train", str(f["garbage.h5"]), str(work / "t"), "--stride", "0.016", "--set",
                                     "training.max_steps"], None),
        ("train --set of an unknown key", ["train", str(f["garbage.h5"]), str(work / "t"), "--stride", "0.016",
                                           "--set", "training.nonsense=1"], None),
        ("evaluate a random-bytes model", ["evaluate", str(f["garbage.pt"]), str(f["garbage.h5"])], None),
    ]


def main() -> int:
    started = time.perf_counter()
    records = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        files = prepare(work)
        for description, argv, folder in cases(files, work):
            before = _digest(folder) if folder is not None else None
            proc = subprocess.run(CLI + argv, capture_output=True, text=True, timeout=600,
                                  env=single_thread_env())
            lines = [line for line in proc.stderr.splitlines() if line.strip()]
            unchanged = folder is None or _digest(folder) == before
            handled = (proc.returncode != 0 and len(lines) == 1 and "Traceback" not in proc.stderr and unchanged)
            records.append({"case": description, "exit": proc.returncode, "stderr_lines": len(lines),
                            "message": lines[-1] if lines else "", "files_unchanged": unchanged, "handled": handled})
            print(f"{'ok ' if handled else 'BAD'} {description}: {lines[-1] if lines else '(no message)'}", flush=True)
    summary = {"cases": len(records), "handled": sum(r["handled"] for r in records)}
    write_json(OUT, {"benchmark": "bad_inputs", "summary": summary, "cases": records, "threads": 1,
                     "wall_s": time.perf_counter() - started, "stack": stack_info()}, overwrite=True)
    print(summary)
    return 0 if summary["handled"] == summary["cases"] else 1


if __name__ == "__main__":
    sys.exit(main())
