"""Training ablations: held-out learning curves and a short dynamics run per training run.

    python benchmarks/learning_curves.py NAME RUN_DIR --label LABEL --system SYSTEM
        [--dynamics-ps 20] [--threads N] [--overwrite]

Reads ``RUN_DIR/curves.json`` (written by ``openmm-flashmd train``: per validation, step,
wall time, torch threads and per-element held-out Δq / v' RMSE and KE ratio) and
``RUN_DIR/hypers.yaml``; runs ``openmm-flashmd simulate`` (NVT 300 K, Langevin 1/ps with
the energy filter, "O F E O", CPU platform) with ``RUN_DIR/model.pt`` on the built-in
``SYSTEM`` for ``--dynamics-ps`` ps and records its per-element temperatures (second half),
filter clamps, trust checks and when a stride failed. Everything goes into the entry
``LABEL`` of ablation ``NAME`` in ``benchmarks/results/learning_curves.json`` (rendered into
the README by ``benchmarks/report.py``); a plot of all runs of ``NAME`` goes to
``benchmarks/results/learning-curves-NAME.png``. Units: nm, nm/ps, K, s.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import stack_info, write_json  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
OUT = RESULTS / "learning_curves.json"
KEEP = ("dq_rmse", "v_rmse", "kinetic_energy_ratio", "dq_free_flight_rmse", "v_unchanged_rmse", "dq_guess_rmse",
        "v_guess_rmse")


def per_element(summary: Optional[Dict[str, Any]]) -> Dict[str, Dict[str, float]]:
    """Held-out errors of a trainer's validation summary by element symbol, only ``KEEP``."""
    return {e["symbol"]: {k: e[k] for k in KEEP if k in e} for e in (summary or {}).get("per_element", {}).values()}


def trimmed_curves(run_dir: Path, step_offset: int = 0) -> List[Dict[str, Any]]:
    """The learning curves of a training run, per element only the quantities in ``KEEP``;
    ``step_offset`` is added to the steps of a run that started from another run's weights."""
    return [{"step": entry["step"] + step_offset, "wall_s": entry["wall_s"], "threads": entry["threads"],
             "val_loss": entry["val_loss"], "per_element": per_element(entry.get("summary"))}
            for entry in json.loads((run_dir / "curves.json").read_text())]


def dynamics(model: Path, system: str, duration: float, threads: Optional[int], seed: int = 0) -> Dict[str, Any]:
    """A short NVT run of ``openmm-flashmd simulate`` (random ``seed``, no fallback MD: the model's own
    dynamics): per-element temperatures of its second half, filter clamps, failed trust checks, and
    the failure if a stride failed."""
    import torch

    from openmm_flashmd import FlashMDError
    from openmm_flashmd.analysis.report import failed_checks, read_log
    from openmm_flashmd.simulate import simulate

    if threads:
        torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as work:
        out = Path(work) / "run"
        began = time.perf_counter()
        failure = None
        try:
            simulate(out, system=system, model=str(model), duration=duration, platform="CPU", seed=seed,
                     fallback=False, progress=False)
        except FlashMDError as err:
            failure = str(err).split(";")[0]
        wall = time.perf_counter() - began
        log = read_log(out / "log.csv") if (out / "log.csv").exists() else {}
        checks = failed_checks(out / "report.md")
    half = len(log.get("time_ps", [])) // 2
    temperatures = {}
    for column, values in (log.items() if half else []):
        if column == "temperature_K":
            temperatures["all"] = float(np.mean(values[half:]))
        elif column.startswith("temperature_"):
            temperatures[column[len("temperature_"):-len("_K")]] = float(np.mean(values[half:]))
    strides = float(np.sum(log["filter_strides"])) if "filter_strides" in log else 0.0
    return {"system": system, "seed": seed, "duration_ps": duration, "splitting": "O F E O",
            "collision_rate_per_ps": 1.0,
            "completed_ps": float(log["time_ps"][-1]) if len(log.get("time_ps", [])) else 0.0,
            "failure": failure, "temperature_second_half_K": temperatures,
            "clamped_fraction": float(np.sum(log["filter_clamped"])) / strides if strides else None,
            "failed_checks": checks, "wall_s": wall}


def plot(path: Path, runs: Dict[str, Dict[str, Any]]) -> None:
    """Held-out Δq, v′ RMSE and KE ratio against step: one colour per run, one line style per
    element; the runs' labels (wrapped) in a legend below the panels."""
    import textwrap

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    quantities = (("dq_rmse", "held-out Δq RMSE (nm)"), ("v_rmse", "held-out v′ RMSE (nm/ps)"),
                  ("kinetic_energy_ratio", "KE ratio (model / reference)"))
    styles = ("-", "--", ":", "-.")
    elements = sorted({e for run in runs.values() for e in run["curves"][-1]["per_element"]},
                      key=lambda e: (e != "H", e))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    legend_height = 0.17 * len(runs) + 0.25  # inches
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6 + legend_height), dpi=100)
    for index, run in enumerate(runs.values()):
        curves = run["curves"]
        steps = [c["step"] for c in curves]
        for ax, (key, _) in zip(axes, quantities):
            for element, style in zip(elements, styles * len(elements)):
                values = [c["per_element"].get(element, {}).get(key, np.nan) for c in curves]
                ax.plot(steps, values, color=colours[index % len(colours)], ls=style, lw=1.2)
    for ax, (key, name) in zip(axes, quantities):
        ax.set_xlabel("training step")
        ax.set_ylabel(name)
        if key == "kinetic_energy_ratio":
            ax.axhline(1.0, color="grey", lw=0.8, ls="--")
        else:
            ax.set_yscale("log")
    axes[0].legend([Line2D([], [], color="black", ls=style) for style in styles[:len(elements)]], elements,
                   fontsize=7, title="element", title_fontsize=7)
    fig.legend([Line2D([], [], color=colours[i % len(colours)], lw=2) for i in range(len(runs))],
               [textwrap.shorten(label, 210) for label in runs], loc="lower center", ncol=1, fontsize=7,
               frameon=False)
    fig.tight_layout(rect=(0, legend_height / (3.6 + legend_height), 1, 1))
    fig.savefig(path)
    plt.close(fig)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", help="the ablation (e.g. water-rigid-8fs)")
    parser.add_argument("run_dir", type=Path, help="output directory of 'openmm-flashmd train'")
    parser.add_argument("--label", required=True, help="what this run tries (e.g. 'Verlet guess')")
    parser.add_argument("--system", required=True, help="built-in system for the dynamics run")
    parser.add_argument("--dynamics-ps", type=float, default=20.0, help="ps of NVT (default %(default)s; 0: none)")
    parser.add_argument("--step-offset", type=int, default=0,
                        help="steps the run's initial weights had already trained (training.init_from)")
    parser.add_argument("--threads", type=int, default=None, help="torch and OpenMM CPU threads")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing entry")
    args = parser.parse_args(argv)

    import yaml

    data = json.loads(OUT.read_text()) if OUT.exists() else {"benchmark": "learning_curves", "ablations": {}}
    ablation = data["ablations"].setdefault(args.name, {})
    if args.label in ablation and not args.overwrite:
        raise SystemExit(f"{OUT} has '{args.label}' in '{args.name}'; pass --overwrite to replace it")
    hypers = yaml.safe_load((args.run_dir / "hypers.yaml").read_text())
    entry = {"run_dir": str(args.run_dir), "model": hypers["model"], "loss": hypers["loss"],
             "training": {k: hypers["training"][k] for k in ("batch_size", "learning_rate", "max_steps")},
             "step_offset": args.step_offset, "curves": trimmed_curves(args.run_dir, args.step_offset)}
    if args.dynamics_ps > 0:
        entry["dynamics"] = dynamics(args.run_dir / "model.pt", args.system, args.dynamics_ps, args.threads)
    entry["stack"] = stack_info()
    ablation[args.label] = entry
    write_json(OUT, data, overwrite=True)
    plot(RESULTS / f"learning-curves-{args.name}.png", ablation)
    return 0


if __name__ == "__main__":
    sys.exit(main())
