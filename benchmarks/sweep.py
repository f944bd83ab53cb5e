"""Model size, cutoff and batch chosen by measurement: training runs at one fixed wall-time budget.

    python benchmarks/sweep.py NAME DATA --stride 0.008 --hypers examples/models/alanine.yaml \\
        --config "narrow: model.d_pet=48" \\
        --config "wide: model.d_pet=96 model.d_node=192 model.d_feedforward=192" \\
        --budget 900 [--system alanine-dipeptide-implicit-hbonds --dynamics-ps 20] [--threads 1] \\
        [--runs-dir bundled-work/sweep-NAME] [--overwrite]

Every configuration (a label, then ``--set``-style overrides on top of ``--hypers`` and the
sweep's own ``--set``) trains for the same wall-time budget (s of training loop, validation and
set-up not counted): a probe of ``--probe-steps`` steps gives the configuration's step rate on
this machine, its ``training.max_steps`` becomes budget x rate, and its learning-rate schedule
ends with the budget (a bigger model or batch gets fewer steps, as it would in practice). The
rate is kept beside the run's folder, so an interrupted sweep resumes each run from its checkpoint
with the same step count. Configurations already in the results are kept; ``--overwrite``
measures them again from their finished runs (remove a run's folder to train it again).

Per configuration: the overrides, parameters, steps, step rate (steps/s), training wall time (s)
and torch threads, the validation-loss curve (step, wall s, loss: the report compares the
configurations at equal steps and at equal wall time too, since the machine's load can move a
probe's rate), the exported model's held-out errors per element (Δq RMSE nm, v′ RMSE nm/ps,
KE ratio; the trainer's final validation on the held-out segments) and, with ``--system``, a
short NVT run of the model (``benchmarks/learning_curves.py``'s, second-half temperatures in K).
Writes the entry ``NAME`` of ``benchmarks/results/sweep.json`` after each configuration
(rendered into the README by ``benchmarks/report.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import stack_info, write_json  # noqa: E402
from learning_curves import dynamics, per_element  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
OUT = RESULTS / "sweep.json"
#: Overrides of the probe: no validation and no checkpoint inside it (its checkpoint comes at its stop).
PROBE = ("training.max_steps=1000000000", "training.validate_every=1000000000",
         "training.checkpoint_every=1000000000")


def parse_config(text: str) -> Tuple[str, List[str]]:
    """``"label: section.key=value ..."`` as (label, overrides)."""
    label, sep, rest = text.partition(":")
    overrides = rest.split()
    if not sep or not label.strip() or any("=" not in o or "." not in o.split("=", 1)[0] for o in overrides):
        raise SystemExit(f"--config {text!r}: expected 'LABEL: section.key=value ...'")
    return label.strip(), overrides


def step_rate(data: str, run_dir: Path, stride: float, hypers: Optional[str], overrides: List[str],
              probe_steps: int) -> float:
    """Training steps per second of one configuration, from a ``probe_steps`` run's loop time
    (its checkpoint's wall time: set-up excluded); kept beside the run as ``<run_dir>.rate.json``."""
    import torch

    from openmm_flashmd.train import train

    kept = run_dir.with_name(run_dir.name + ".rate.json")
    if kept.exists():
        return float(json.loads(kept.read_text())["steps_per_s"])
    probe = run_dir.with_name(run_dir.name + ".probe")
    train(data, probe, stride, hypers=hypers, overrides=overrides + list(PROBE), overwrite=True, device="cpu",
          progress=False, export=False, stop_after=probe_steps)
    wall = float(torch.load(probe / "checkpoint.pt", weights_only=False)["state"]["wall"])
    rate = probe_steps / wall
    tmp = kept.with_suffix(".tmp")
    tmp.write_text(json.dumps({"probe_steps": probe_steps, "wall_s": wall, "steps_per_s": rate,
                               "threads": torch.get_num_threads()}))
    os.replace(tmp, kept)
    shutil.rmtree(probe)
    return rate


def held_out(run_dir: Path) -> Dict[str, Any]:
    """The final validation of a finished run: loss, best step and per-element errors."""
    validation = json.loads((run_dir / "validation.json").read_text())
    return {"val_loss": validation["loss"], "best_step": validation["step"],
            "per_element": per_element(validation["errors"])}


def run_config(label: str, overrides: List[str], args: argparse.Namespace) -> Dict[str, Any]:
    """Train one configuration for the budget (resuming its checkpoint) and measure it."""
    from openmm_flashmd import load_model
    from openmm_flashmd.train import train

    run_dir = args.runs_dir / label
    rate = step_rate(args.data, run_dir, args.stride, args.hypers, overrides, args.probe_steps)
    steps = max(1, int(args.budget * rate))
    full = overrides + [f"training.max_steps={steps}"]
    if (run_dir / "hypers.yaml").exists():
        import yaml

        before = yaml.safe_load((run_dir / "hypers.yaml").read_text())["training"]["max_steps"]
        if int(before) != steps:
            raise SystemExit(f"{run_dir} holds a run of {before} steps, not {steps} (another budget?); "
                             "remove it or pass another --runs-dir")
    if not (run_dir / "model.pt").exists():
        train(args.data, run_dir, args.stride, hypers=args.hypers, overrides=full,
              resume=(run_dir / "checkpoint.pt").exists(), device="cpu", progress=not args.no_progress)
    curves = json.loads((run_dir / "curves.json").read_text())
    model = load_model(run_dir / "model.pt")
    entry = {"overrides": overrides, "parameters": int(sum(p.numel() for p in model.parameters())),
             "steps": steps, "steps_per_s": rate, "wall_s": curves[-1]["wall_s"], "threads": curves[-1]["threads"],
             "held_out": held_out(run_dir), "run_dir": str(run_dir),
             "val_loss_curve": [[c["step"], c["wall_s"], c["val_loss"]] for c in curves]}
    if args.system and args.dynamics_ps > 0:
        entry["dynamics"] = dynamics(run_dir / "model.pt", args.system, args.dynamics_ps, args.threads)
    return entry


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", help="the sweep (e.g. alanine-dipeptide-implicit-hbonds-8fs)")
    parser.add_argument("data", help="trajectory file(s) from 'openmm-flashmd generate'")
    parser.add_argument("--stride", type=float, required=True, help="ps")
    parser.add_argument("--hypers", help="YAML file of hyper-parameters every configuration starts from")
    parser.add_argument("--set", dest="common", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="an override for every configuration (repeatable)")
    parser.add_argument("--config", action="append", required=True, metavar="'LABEL: KEY=VALUE ...'",
                        help="one configuration: a label and its overrides (repeatable)")
    parser.add_argument("--budget", type=float, required=True, help="training-loop seconds per configuration")
    parser.add_argument("--probe-steps", type=int, default=30, help="steps that measure a configuration's rate")
    parser.add_argument("--system", help="built-in system for a short NVT run of each model")
    parser.add_argument("--dynamics-ps", type=float, default=20.0, help="ps of that run (default %(default)s)")
    parser.add_argument("--threads", type=int, default=None, help="torch and OpenMM CPU threads")
    parser.add_argument("--runs-dir", type=Path, help="where the training runs go (default bundled-work/sweep-NAME)")
    parser.add_argument("--out", type=Path, default=OUT, help="results file (default %(default)s)")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--overwrite", action="store_true", help="measure configurations already in the results again (from their runs)")
    args = parser.parse_args(argv)
    configs = [parse_config(text) for text in args.config]
    if len({label for label, _ in configs}) != len(configs):
        raise SystemExit("--config labels must be distinct")
    args.runs_dir = args.runs_dir or Path("bundled-work") / f"sweep-{args.name}"

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    data = json.loads(args.out.read_text()) if args.out.exists() else {"benchmark": "sweep", "sweeps": {}}
    sweep = data["sweeps"].setdefault(args.name, {})
    settings = {"data": args.data, "stride_ps": args.stride, "hypers": args.hypers, "common": args.common,
                "budget_s": args.budget, "probe_steps": args.probe_steps}
    if sweep.get("settings", settings) != settings and not args.overwrite:
        raise SystemExit(f"{args.out} has sweep {args.name!r} with other settings; pass --overwrite or another NAME")
    sweep["settings"] = settings
    sweep.setdefault("configs", {})
    for label, overrides in configs:
        if label in sweep["configs"] and not args.overwrite:
            print(f"{label}: kept from {args.out}")
            continue
        sweep["configs"][label] = run_config(label, args.common + overrides, args)
        sweep["stack"] = stack_info()
        write_json(args.out, data, overwrite=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
