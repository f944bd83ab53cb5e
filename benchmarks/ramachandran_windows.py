"""How far a stride model's Ramachandran statistics are from reference MD, against what exact
dynamics reads on the same comparison (issue 15's alanine goal: JS ≤ 0.05 at ≥ 1 ns each).

    python benchmarks/ramachandran_windows.py run NAME (--model MODEL | --reference) --ns N
                                              [--seed S] [--no-rotation] [--system NAME] [--work-dir DIR]
                                              [--threads N]
    python benchmarks/ramachandran_windows.py summarize [--window-ns 1] [--overwrite]

``run`` samples φ/ψ every 0.1 ps (FlashMD: the whole strides nearest to it) from the validation's
start state of the system (its cached reference in ``benchmarks/results/validation``), after the
validation's settling time: FlashMD with the energy filter ("O F E O", friction 1/ps) for
``--model``, or reference Langevin MD (the validation's reference integrator) with another random
seed for ``--reference``, so that its windows are independent of the cached reference run
(``--no-rotation``: FlashMD without its per-stride random rotation, whose frame noise a model that
is not exactly equivariant adds to every stride). It goes in pieces of 50 ps, each followed by one
atomic write of the angles so far with an OpenMM checkpoint (``--work-dir``/NAME.partial.npz): an
interrupted run started again with the same arguments goes on from the last piece. The angles go
to ``benchmarks/results/ramachandran/NAME.npz`` (degrees, float32), with the run's settings in
``NAME.json``.

``summarize`` compares every run there, and the 1 ns filtered NVT runs of the bundled models'
validations (``validation/<system>-<N>fs.npz``), with the cached reference run (2 ns), the
validation's comparison (its ``js_divergence``: 36 x 36 bins, nats): each disjoint window of
``--window-ns`` (the run cut into as many equal windows as its length holds, rounded) of every run
against the whole cached reference, and for each run the divergence against window length (disjoint
windows of 1/8 to all of the run). The windows of the independent
reference runs are exact dynamics: their spread is what the comparison reads for a perfect model
at that length. Writes ``benchmarks/results/ramachandran_windows.json`` (rendered into the README by
``benchmarks/report.py``) and ``ramachandran/windows.png``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import stack_info, write_json  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
RUNS = RESULTS / "ramachandran"
OUT = RESULTS / "ramachandran_windows.json"
VALIDATION = RESULTS / "validation"
SYSTEM = "alanine-dipeptide-implicit-hbonds"
SAMPLE_PS = 0.1
SETTLE_PS = 2.0
PIECE_PS = 50.0
GOAL_JS = 0.05


def _start_state(system: str):
    from openmm_flashmd.validation.records import read_arrays
    from openmm_flashmd.validation.sampling import State

    arrays = read_arrays(VALIDATION / f"reference-{system}.npz")
    return State(arrays["start_positions"], arrays["start_velocities"], arrays["start_box"])


def run(args: argparse.Namespace) -> int:
    """Sample φ/ψ of one run, resuming from its last checkpoint in ``args.work_dir``."""
    import copy

    from openmm_flashmd.run_files import atomic_write
    from openmm_flashmd.validation import compare
    from openmm_flashmd.validation.records import read_arrays, write_arrays
    from openmm_flashmd.validation.sampling import advance
    from openmm_flashmd.validation.target import Target

    if args.reference and args.no_rotation:
        raise SystemExit("--no-rotation is an option of FlashMD runs (--model)")
    target = Target.builtin(args.system, threads=args.threads, progress=not args.no_progress)
    system = copy.deepcopy(target.system)
    if args.reference:
        integrator, dt, what = target.langevin(), target.timestep, "reference Langevin MD"
    else:
        from openmm_flashmd.model.protocol import load_model, read_metadata

        model = load_model(args.model)
        integrator = target.flashmd(system, model, "O F E O", random_rotation=not args.no_rotation)
        dt = float(read_metadata(model)["stride"])
        what = f'FlashMD "O F E O" with {args.model}' + (", no random rotation" if args.no_rotation else "")
    integrator.setRandomNumberSeed(int(args.seed))
    context = target.context(system, integrator)
    interval = max(1, int(round(SAMPLE_PS / dt)))
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    partial = work / f"{args.name}.partial.npz"  # angles so far + the Context's checkpoint, written together
    out_npz, out_json = RUNS / f"{args.name}.npz", RUNS / f"{args.name}.json"
    settings = {"name": args.name, "what": what, "model": args.model,
                "random_rotation": None if args.reference else not args.no_rotation, "system": args.system,
                "seed": int(args.seed), "length_ps": 1000.0 * args.ns, "sample_interval_ps": interval * dt,
                "settle_ps": SETTLE_PS, "collision_rate_per_ps": 1.0}
    if out_npz.exists():
        raise SystemExit(f"{out_npz} exists: remove it to run {args.name} again")
    if partial.exists():
        saved = read_arrays(partial)
        if json.loads(str(saved["settings"])) != settings:
            raise SystemExit(f"{partial} was started with other settings: remove it to start over")
        context.loadCheckpoint(saved["checkpoint"].tobytes())
        phi, psi, wall = list(saved["phi"]), list(saved["psi"]), float(saved["wall_s"])
        print(f"resuming {args.name} at {len(phi) * interval * dt:.1f} ps", flush=True)
    else:
        _start_state(args.system).apply(context, target.periodic)
        advance(context, integrator, dt, SETTLE_PS, interval, f"{args.name} settle", progress=target.progress)
        phi, psi, wall = [], [], 0.0
    total = int(round(settings["length_ps"] / (interval * dt)))
    per_piece = max(1, int(round(PIECE_PS / (interval * dt))))
    while len(phi) < total:
        samples = min(per_piece, total - len(phi))
        rec = target.recorder(positions=True)
        done = advance(context, integrator, dt, samples * interval * dt, interval,
                       f"{args.name} {len(phi) * interval * dt:.0f} ps", rec, progress=target.progress)
        if done["failed_at_ps"] is not None:
            raise SystemExit(f"{args.name} failed: {done['error']}")
        wall += done["wall_s"]
        piece_phi, piece_psi = compare.backbone_dihedrals(compare.trajectory(target.topology, rec.positions))
        phi += list(piece_phi)
        psi += list(piece_psi)
        write_arrays(partial, {"phi": np.asarray(phi, np.float32), "psi": np.asarray(psi, np.float32),
                               "wall_s": np.asarray(wall), "settings": np.asarray(json.dumps(settings)),
                               "checkpoint": np.frombuffer(context.createCheckpoint(), dtype=np.uint8)})
    RUNS.mkdir(parents=True, exist_ok=True)
    write_arrays(out_npz, {"phi": np.asarray(phi, np.float32), "psi": np.asarray(psi, np.float32)})
    atomic_write(out_json, json.dumps(dict(settings, wall_s=wall, threads=args.threads, stack=stack_info()),
                                      indent=1) + "\n")
    partial.unlink()
    print(f"{args.name}: {settings['length_ps']:g} ps in {wall:.0f} s -> {out_npz}", flush=True)
    return 0


def _runs() -> Dict[str, Dict[str, Any]]:
    """Every run to compare: this script's (``RUNS/*.json`` + ``.npz``) and the 1 ns filtered NVT
    runs of the bundled models' validations (``VALIDATION/<system>-<N>fs.npz``)."""
    from openmm_flashmd.validation.records import read_arrays

    found: Dict[str, Dict[str, Any]] = {}
    for path in sorted(RUNS.glob("*.json")):
        meta = json.loads(path.read_text())
        found[meta["name"]] = dict(meta, arrays=read_arrays(path.with_suffix(".npz")))
    for path in sorted(VALIDATION.glob(f"{SYSTEM}-*fs.json")):
        record = json.loads(path.read_text())
        arrays = read_arrays(path.with_suffix(".npz"))
        nvt = record["nvt"]["filter"]
        found[f"{path.stem} (validation)"] = {
            "name": f"{path.stem} (validation)", "model": record["model"], "what": 'FlashMD "O F E O", the validation run',
            "length_ps": nvt["completed_ps"], "sample_interval_ps": nvt["sample_interval_ps"], "wall_s": nvt["wall_s"],
            "arrays": {"phi": arrays["phi"], "psi": arrays["psi"]}}
    return found


def summarize(args: argparse.Namespace) -> int:
    from openmm_flashmd.analysis.dihedrals import basin_statistics
    from openmm_flashmd.validation.compare import RAMACHANDRAN_BINS, window_divergences
    from openmm_flashmd.validation.records import read_arrays

    reference = read_arrays(VALIDATION / f"reference-{SYSTEM}.npz")
    reference_record = json.loads((VALIDATION / f"reference-{SYSTEM}.json").read_text())
    phi_ref, psi_ref = reference["phi"], reference["psi"]
    runs: Dict[str, Any] = {}
    for name, meta in _runs().items():
        phi, psi = meta["arrays"]["phi"], meta["arrays"]["psi"]
        dt = float(meta["sample_interval_ps"])
        # whole windows of --window-ns, each the run's length over their number (a 3 ns run sampled every
        # 0.096 ps is 31 250 frames: three windows of 10 416, 999.94 ps each)
        n_windows = max(1, int(round(len(phi) * dt / (1000.0 * args.window_ns))))
        values = window_divergences(phi, psi, phi_ref, psi_ref, len(phi) // n_windows)
        lengths = {}
        for parts in (8, 4, 2, 1):
            js = window_divergences(phi, psi, phi_ref, psi_ref, len(phi) // parts)
            lengths[f"{len(phi) // parts * dt:.0f}"] = {"mean": float(np.mean(js)), "values": js}
        runs[name] = {"what": meta["what"], "model": meta["model"], "exact": meta["model"] is None,
                      "basins": basin_statistics(phi, psi),
                      "length_ps": meta["length_ps"], "wall_s": meta["wall_s"], "window_js": values,
                      "window_js_mean": float(np.mean(values)) if values else None, "js_by_window_ps": lengths}
    exact = [v for r in runs.values() if r["exact"] for v in r["window_js"]]
    null: Dict[str, Any] = {"windows": len(exact)}
    if exact:
        null.update(mean=float(np.mean(exact)), min=float(np.min(exact)), max=float(np.max(exact)),
                    share_above_goal=float(np.mean(np.asarray(exact) > GOAL_JS)))
    payload = {"benchmark": "ramachandran_windows", "system": SYSTEM, "window_ns": args.window_ns,
               "reference_ps": len(phi_ref) * reference_record["sample_interval_ps"],
               "reference_halves_js": reference_record.get("js_between_halves"), "bins": RAMACHANDRAN_BINS,
               "js_units": "nats", "goal_js": GOAL_JS,
               "reference_basins": basin_statistics(phi_ref, psi_ref), "exact_dynamics": null, "runs": runs,
               "stack": stack_info()}
    write_json(OUT, payload, args.overwrite)
    RUNS.mkdir(parents=True, exist_ok=True)
    _plot(RUNS / "windows.png", runs)
    for name, r in runs.items():
        print(f"{name}: {args.window_ns:g} ns windows " + ", ".join(f"{v:.3f}" for v in r["window_js"]))
    return 0


def _plot(path: Path, runs: Dict[str, Any]) -> None:
    from openmm_flashmd.validation.plots import _plt

    plt = _plt()
    fig, ax = plt.subplots(figsize=(8.5, 4.2))
    for name, r in runs.items():
        x = [float(k) / 1000.0 for k in r["js_by_window_ps"]]
        y = [v["mean"] for v in r["js_by_window_ps"].values()]
        ax.plot(x, y, "o-" if r["exact"] else "s--", label=name, color="black" if r["exact"] else None, alpha=0.8)
    ax.axhline(GOAL_JS, color="red", lw=0.8, ls=":", label=f"goal {GOAL_JS:g}")
    ax.set_xscale("log")
    ticks = [0.125, 0.25, 0.5, 1, 2, 4]
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.minorticks_off()
    ax.set_xlabel("window length (ns)")
    ax.set_ylabel("Ramachandran JS vs 2 ns reference MD (nats)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="sample phi/psi of one run (resumable)")
    r.add_argument("name")
    what = r.add_mutually_exclusive_group(required=True)
    what.add_argument("--model", help="bundled model name or model file")
    what.add_argument("--reference", action="store_true", help="reference Langevin MD instead of a model")
    r.add_argument("--ns", type=float, required=True, help="measured length, ns")
    r.add_argument("--seed", type=int, default=101, help="random seed of the thermostat (default %(default)s)")
    r.add_argument("--no-rotation", action="store_true",
                   help="FlashMD without the integrator's random rotation of the system around every stride")
    r.add_argument("--system", default=SYSTEM)
    r.add_argument("--work-dir", default="/tmp/flashmd-ramachandran")
    r.add_argument("--threads", type=int, default=None)
    r.add_argument("--no-progress", action="store_true")
    s = sub.add_parser("summarize", help="JS of every run's windows against the cached reference")
    s.add_argument("--window-ns", type=float, default=1.0)
    s.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    return run(args) if args.command == "run" else summarize(args)


if __name__ == "__main__":
    sys.exit(main())
