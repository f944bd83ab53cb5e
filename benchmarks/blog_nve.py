"""The critical blog's NVE protocol (``../shared/seeds/001_*``) for a rigid-water stride model.

    python benchmarks/blog_nve.py MODEL [--lengths quick|full] [--starts N] [--first-start K]
                                        [--threads N] [--overwrite]

258 rigid TIP3P waters built with OpenMM's ``Modeller.addSolvent`` (amber14/tip3p.xml, PME,
cutoff 0.9 nm, SETTLE): minimise, Langevin MD at 300 K (reference timestep 1 fs), then from
that state 50 ps of NVE twice: FlashMD without energy filter (splitting "F") and reference
velocity Verlet (1 fs). Reported: temperature at the start and end (means over the first
1 ps and last 5 ps), their difference, and the total-energy drift (linear fit, kJ/mol/ps,
also per atom). The blog's best learned models (1 fs strides, flexible water) cooled from
300 K to 207-213 K and drifted about -67 kJ/mol/ps; goals of this project (issue 15):
|ΔT| <= 10 K and |drift| <= 5 kJ/mol/ps.

One run's ΔT is noisy (reference MD's own runs move by up to ±5 K, and a stride model's total
energy wanders), so ``--starts N`` repeats the protocol from N independent start states (start
k: the equilibration's velocities drawn with seed ``SEED + 3 + k``; start 0 is the single run's)
and the goals are judged on the mean over starts with its standard error. ``--first-start K``
adds starts K, K+1, ... to a model already in the JSON (same lengths), e.g. from a second
process; the JSON is re-read just before it is written.

Writes the model's entry of ``benchmarks/results/blog_nve.json`` (rendered into the README
by ``benchmarks/report.py``) and ``benchmarks/results/blog-nve/<model>.png`` (start 0; start
k > 0: ``<model>-start<k>.png``). Units: nm, ps, K, kJ/mol.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import stack_info, write_json  # noqa: E402

from openmm_flashmd.validation.plots import _plt  # noqa: E402
from openmm_flashmd.validation.runs import fallback_record  # noqa: E402
from openmm_flashmd.validation.sampling import Recorder, State, advance  # noqa: E402
from openmm_flashmd.validation.target import SEED, Target  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
OUT = RESULTS / "blog_nve.json"
PLOTS = RESULTS / "blog-nve"
N_WATERS = 258
TEMPERATURE = 300.0
REFERENCE_TIMESTEP = 0.001  # ps
LENGTHS = {"full": dict(equil_ps=20.0, nve_ps=50.0, start_ps=1.0, end_ps=5.0, sample_ps=0.1),
           "quick": dict(equil_ps=0.2, nve_ps=0.4, start_ps=0.1, end_ps=0.1, sample_ps=0.02)}
GOALS = {"abs_T_drift_K": 10.0, "abs_energy_drift_kjmol_per_ps": 5.0}


def blog_water():
    """(topology, System, positions nm) of 258 rigid TIP3P waters from ``Modeller.addSolvent``."""
    from openmm import app, unit

    forcefield = app.ForceField("amber14/tip3p.xml")
    modeller = app.Modeller(app.Topology(), [])
    modeller.addSolvent(forcefield, model="tip3p", numAdded=N_WATERS)
    system = forcefield.createSystem(modeller.topology, nonbondedMethod=app.PME, nonbondedCutoff=0.9 * unit.nanometer,
                                     rigidWater=True, removeCMMotion=False)
    return modeller.topology, system, modeller.positions


def nve_run(system, integrator, start: State, dt: float, lengths: Dict[str, float], setup: Target, label: str,
            energy_groups=None) -> Dict[str, Any]:
    """Run NVE from ``start`` and summarise temperature and total energy (see module docstring)."""
    context = setup.context(system, integrator)
    start.apply(context, True)
    rec = Recorder(setup.masses, setup.elements, setup.dof, energy=True, energy_groups=energy_groups)
    rec(context, 0.0)
    interval = max(1, int(round(lengths["sample_ps"] / dt)))
    run = advance(context, integrator, dt, lengths["nve_ps"], interval, label, rec, progress=setup.progress)
    t, temp = np.asarray(rec.time), np.asarray(rec.velocities_T)
    total = np.asarray(rec.potential) + np.asarray(rec.kinetic)
    first = temp[t <= t[0] + lengths["start_ps"]]
    last = temp[t >= t[-1] - lengths["end_ps"]]
    finite = np.isfinite(total)
    drift = float(np.polyfit(t[finite], total[finite], 1)[0]) if finite.sum() > 2 else None
    return {"completed_ps": run["done_ps"], "failed_at_ps": run["failed_at_ps"], "error": run["error"],
            "wall_s": run["wall_s"], "T_start_K": float(first.mean()), "T_end_K": float(last.mean()),
            "T_drift_K": float(last.mean() - first.mean()), "energy_drift_kjmol_per_ps": drift,
            "energy_drift_kjmol_per_ps_per_atom": None if drift is None else drift / setup.n_atoms,
            "series": {"time": t.tolist(), "T": temp.tolist(), "E_total": total.tolist()}}


def blog_target(threads: Optional[int], fallback: bool = True, progress: bool = True) -> Target:
    """The blog's box as a validation target (1 fs reference timestep, 300 K)."""
    from openmm import unit

    topology, system, positions = blog_water()
    return Target("blog-water-258", system, topology, positions.value_in_unit(unit.nanometer), TEMPERATURE,
                  REFERENCE_TIMESTEP, threads=threads, fallback=fallback, progress=progress)


def plot(path: Path, runs: Dict[str, Dict[str, Any]]) -> None:
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2), dpi=100)
    for label, run in runs.items():
        s = run["series"]
        axes[0].plot(s["time"], s["T"], lw=0.8, label=label)
        e = np.asarray(s["E_total"])
        axes[1].plot(s["time"], e - e[0], lw=0.8, label=label)
    axes[0].axhline(TEMPERATURE, color="k", lw=0.8, ls="--")
    axes[0].set_ylabel("T (K)")
    axes[1].set_ylabel("total energy − start (kJ/mol)")
    for ax in axes:
        ax.set_xlabel("time (ps)")
        ax.legend(fontsize=8)
    fig.suptitle(f"{N_WATERS} rigid TIP3P waters (Modeller), NVE", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def summarize(starts: List[Dict[str, Any]]) -> Dict[str, Dict[str, Any]]:
    """Per run label, over the starts: ΔT (K) and energy drift (kJ/mol/ps) as mean, standard error
    (None for one start) and values; the mean share of strides run as fallback MD; failed runs."""
    def stats(values: List[float]) -> Dict[str, Any]:
        v = np.asarray(values, dtype=float)
        sem = float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else None
        return {"mean": float(v.mean()) if len(v) else None, "sem": sem, "n": int(len(v)), "values": v.tolist()}

    summary = {}
    for label in starts[0]["runs"]:
        runs = [start["runs"][label] for start in starts]
        done = [r for r in runs if r["failed_at_ps"] is None]
        shares = [(r.get("fallback") or {}).get("fallback_fraction") for r in runs]
        shares = [x for x in shares if x is not None]
        summary[label] = {
            "T_drift_K": stats([r["T_drift_K"] for r in done]),
            "energy_drift_kjmol_per_ps": stats([r["energy_drift_kjmol_per_ps"] for r in done
                                                if r["energy_drift_kjmol_per_ps"] is not None]),
            "fallback_fraction": float(np.mean(shares)) if shares else None,
            "failed": len(runs) - len(done)}
    return summary


def goals_met(summary: Dict[str, Dict[str, Any]]) -> bool:
    """Issue 15's goals on FlashMD's means over the starts (every run completed)."""
    flashmd = next(s for label, s in summary.items() if label.startswith("FlashMD"))
    return (flashmd["failed"] == 0 and flashmd["T_drift_K"]["n"] > 0
            and abs(flashmd["T_drift_K"]["mean"]) <= GOALS["abs_T_drift_K"]
            and flashmd["energy_drift_kjmol_per_ps"]["n"] > 0
            and abs(flashmd["energy_drift_kjmol_per_ps"]["mean"]) <= GOALS["abs_energy_drift_kjmol_per_ps"])


def start_state(setup: Target, lengths: Dict[str, float], index: int) -> State:
    """Start ``index``: minimised, then Langevin MD at 300 K from velocities of seed SEED + 3 + index."""
    import openmm
    from openmm import unit

    system = copy.deepcopy(setup.system)
    context = setup.start_context(system, setup.langevin())
    openmm.LocalEnergyMinimizer.minimize(context, 10.0, 1000)
    context.setVelocitiesToTemperature(TEMPERATURE * unit.kelvin, SEED + 3 + index)
    advance(context, context.getIntegrator(), REFERENCE_TIMESTEP, lengths["equil_ps"], 1000, "equilibration",
            progress=setup.progress)
    return State.from_context(context)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="bundled model name (e.g. water-rigid-8fs) or a model file")
    parser.add_argument("--lengths", choices=sorted(LENGTHS), default="full")
    parser.add_argument("--out", type=Path, default=OUT, help="results JSON (default %(default)s)")
    parser.add_argument("--plots", type=Path, default=PLOTS, help="folder of the plots (default %(default)s)")
    parser.add_argument("--threads", type=int, default=None, help="OpenMM CPU and torch threads")
    parser.add_argument("--no-fallback", dest="fallback", action="store_false",
                        help="FlashMD without the stride monitor (a failed stride ends the run)")
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--starts", type=int, default=1, help="independent start states (default 1)")
    parser.add_argument("--first-start", type=int, default=0,
                        help="index of the first start: add starts to a model already in the JSON")
    args = parser.parse_args(argv)
    if args.starts < 1 or args.first_start < 0:
        parser.error("--starts must be at least 1 and --first-start at least 0")

    import torch

    from openmm_flashmd import load_model, read_metadata
    from openmm_flashmd.data.generate import velocity_verlet_integrator

    stem = Path(args.model).stem
    indices = list(range(args.first_start, args.first_start + args.starts))

    def existing() -> Tuple[Dict[str, Any], Optional[Dict[str, Any]]]:
        """The JSON now and the model's entry to add to (None: none, or replaced); refuses what
        would be overwritten or mixed."""
        merged = json.loads(args.out.read_text()) if args.out.exists() else {"benchmark": "blog_nve", "models": {}}
        entry = merged["models"].get(stem)
        if entry is None or args.overwrite:
            return merged, None
        if args.first_start == 0:
            raise SystemExit(f"{args.out} has a result for {stem}; pass --overwrite to replace it "
                             "or --first-start to add starts")
        taken = {start["index"] for start in entry["starts"]}
        if entry["lengths_mode"] != args.lengths or taken & set(indices):
            raise SystemExit(f"{args.out} has starts {sorted(taken)} of {stem} in {entry['lengths_mode']} lengths; "
                             f"starts {indices} in {args.lengths} lengths would mix or repeat them")
        return merged, entry

    existing()  # refuse before hours of work
    if args.threads:
        torch.set_num_threads(args.threads)
    lengths = LENGTHS[args.lengths]
    began = time.perf_counter()
    setup = blog_target(args.threads, args.fallback, not args.no_progress)
    model = load_model(args.model)
    stride = float(read_metadata(model)["stride"])
    args.plots.mkdir(parents=True, exist_ok=True)

    starts = []
    for index in indices:
        start = start_state(setup, lengths, index)
        runs = {}
        system = copy.deepcopy(setup.system)
        integrator = setup.flashmd(system, model, "F")
        runs["FlashMD (F, no filter)"] = nve_run(system, integrator, start, stride, lengths, setup, "FlashMD NVE",
                                                 integrator.energy_force_groups)
        runs["FlashMD (F, no filter)"]["fallback"] = fallback_record(integrator)
        system = copy.deepcopy(setup.system)
        runs["reference MD (velocity Verlet)"] = nve_run(
            system, velocity_verlet_integrator(REFERENCE_TIMESTEP, 1e-6), start, REFERENCE_TIMESTEP, lengths, setup,
            "reference NVE")
        plot(args.plots / (f"{stem}.png" if index == 0 else f"{stem}-start{index}.png"), runs)
        starts.append({"index": index, "velocity_seed": SEED + 3 + index,
                       "runs": {k: {kk: vv for kk, vv in r.items() if kk != "series"} for k, r in runs.items()}})
        for label, run in starts[-1]["runs"].items():
            drift = run["energy_drift_kjmol_per_ps"]
            print(f"start {index}, {label}: T {run['T_start_K']:.1f} -> {run['T_end_K']:.1f} K, drift "
                  f"{drift if drift is None else round(drift, 2)} kJ/mol/ps"
                  + (f", failed at {run['failed_at_ps']:.3g} ps" if run["failed_at_ps"] is not None else ""))

    merged, entry = existing()
    wall = time.perf_counter() - began
    if entry is not None:
        starts = sorted(entry["starts"] + starts, key=lambda start: start["index"])
        wall += entry["wall_s"]
    summary = summarize(starts)
    met = goals_met(summary)
    result = {"benchmark": "blog-nve", "model": stem, "stride_ps": stride, "lengths_mode": args.lengths,
              "lengths": lengths, "n_waters": N_WATERS, "n_atoms": setup.n_atoms, "temperature_K": TEMPERATURE,
              "system": "258 rigid TIP3P (Modeller.addSolvent, amber14/tip3p.xml), PME, cutoff 0.9 nm",
              "goals": GOALS, "goals_met": bool(met), "summary": summary, "starts": starts,
              "threads": args.threads or torch.get_num_threads(), "wall_s": wall, "stack": stack_info()}
    merged["models"][stem] = result
    write_json(args.out, merged, overwrite=True)
    flashmd = summary["FlashMD (F, no filter)"]["T_drift_K"]
    print(f"FlashMD ΔT over {flashmd['n']} start(s): {flashmd['mean']:+.1f} K"
          + (f" ± {flashmd['sem']:.1f}" if flashmd["sem"] is not None else "") + f"; goals {'met' if met else 'NOT met'}")
    return 0

if __name__ == "__main__":
    sys.exit(main())
