"""Copy a trained stride model into the package and write its model card.

    python examples/models/bundle.py water-16fs runs/water-16fs [--overwrite]

Takes ``RUN_DIR/model.pt`` (from ``openmm-flashmd train``), refuses models over 5 MB,
copies it to ``openmm_flashmd/models/NAME.pt`` and writes ``NAME.md``: data, stride,
hyper-parameters and held-out errors from the model's metadata, the dynamics validation
from ``benchmarks/results/validation/NAME.json`` when it exists, and the exact commands
quoted from ``examples/models/build_all.sh``.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
MODELS = ROOT / "openmm_flashmd" / "models"
VALIDATION = ROOT / "benchmarks" / "results" / "validation"
MAX_BYTES = 5 * 1024 * 1024

SMALL = ("A small model (trained briefly on a 2-core CPU) that demonstrates the pipeline end to end. Its "
         "held-out stride errors beat the trivial baselines (table above), but the dynamics table shows how far "
         "that is from stable, faithful dynamics: do not use it for science. For production, retrain with larger "
         "hypers and many more steps (a GPU): the commands above take `--set model.d_pet=...` and "
         "`--set training.max_steps=...`. ")
NOTES = {
    "water": SMALL + "Trained on 64 flexible TIP3P waters at 300 K only; the stiff O-H vibrations (period about "
             "9 fs) are what a small model at these strides gets wrong first.",
    "water-rigid": SMALL + "Trained on 64 rigid TIP3P waters (SETTLE) at 300 K only; refuses flexible water "
                   "(its metadata records the constraints).",
    "alanine-dipeptide-implicit": SMALL + "Trained on alanine dipeptide in OBC2 implicit solvent at 300 K only "
                                  "(amber14, no constraints); not for other peptides or explicit solvent.",
}


def recipe(name: str) -> str:
    """The commands of ``build_all.sh`` that make ``name``: its data block and its training block."""
    script = (HERE / "build_all.sh").read_text()
    system = re.sub(r"-\d+fs$", "", name)
    blocks = []
    for key in (f"data-{system}", name):
        match = re.search(rf"# >>> {re.escape(key)}\n(.*?)# <<< {re.escape(key)}", script, re.S)
        if match is None:
            raise SystemExit(f"build_all.sh has no block '# >>> {key}'")
        blocks.append(match.group(1).strip())
    blocks.append(f'python examples/models/bundle.py {name} "$WORK/{name}" --overwrite')
    return "# from the repository root\nexport OMP_NUM_THREADS=1 WORK=bundled-work\n" + "\n".join(blocks)


def _pm(entry, spec=".1f", scale=1.0):
    """``mean ± sem`` of a validation entry (``mean``/``value`` and ``sem``)."""
    if not entry:
        return "n/a"
    mean = entry.get("mean", entry.get("value"))
    sem = entry.get("sem")
    if mean is None:
        return "n/a"
    text = format(mean * scale, spec)
    return text + (f" ± {format(sem * scale, spec)}" if sem is not None else "")


def _f(value, spec):
    """``value`` formatted with ``spec``, or ``n/a`` when missing."""
    return "n/a" if value is None else format(value, spec)


def _run_status(run):
    return "" if not run or run.get("failed_at_ps") is None else f" (failed at {run['failed_at_ps']:.2f} ps)"


def dynamics_rows(record):
    """Card rows (quantity, value) from a ``benchmarks/validate.py run`` record."""
    rows = []
    target = record.get("temperature_K", 300.0)
    nvt = record.get("nvt", {})
    for key, label in (("filter", "with filter (O F E O)"), ("no_filter", "without filter (O F O)")):
        run = nvt.get(key)
        if not run:
            continue
        temps = run.get("temperature_K", {})
        per_element = ", ".join(f"{k} {_pm(v)}" for k, v in temps.items() if k != "all")
        rows.append((f"NVT {target:g} K {label}, {run['completed_ps']:g} ps: T (K)",
                     f"all {_pm(temps.get('all'))}; {per_element}{_run_status(run)}"))
    ref_temps = nvt.get("reference", {}).get("temperature_K", {})
    if ref_temps:
        rows.append(("reference MD, same settings: T (K)", ", ".join(f"{k} {_pm(v)}" for k, v in ref_temps.items())))
    filt = nvt.get("filter", {}).get("filter")
    if filt:
        rows.append(("energy filter", f"mean scale {filt['mean_scale']:.4f}, clamped {100 * filt['clamped_fraction']:.1f} % "
                                      f"of {filt['strides']} strides"))
    for pair, entry in (record.get("rdf") or {}).items():
        rows.append((f"{pair} RDF, integrated absolute difference from reference", f"{entry['difference_percent']:.1f} %"))
    npt = record.get("npt")
    if npt:
        rows.append(("NpT 1 bar density (g/cm³): FlashMD / reference",
                     f"{_pm(npt['flashmd'].get('density_g_cm3'), '.4f')} / {_pm(npt['reference'].get('density_g_cm3'), '.4f')} "
                     f"({_f(npt['flashmd'].get('relative_difference_percent'), '+.2f')} %){_run_status(npt['flashmd'])}"))
    rama = record.get("ramachandran")
    if rama:
        js = rama.get("js_divergence")
        rows.append(("Ramachandran JS divergence vs reference (nats)",
                     (f"{js:.3f}" if js is not None else "n/a (the run failed before sampling)")
                     + f" (two halves of the reference: {rama['js_reference_halves']:.3f})"))
        flashmd = rama["basins"].get("flashmd", {})
        for basin in rama["basins"]["reference"]:
            rows.append((f"population {basin}: FlashMD / reference",
                         f"{_pm(flashmd.get(basin), '.3f')} / {_pm(rama['basins']['reference'][basin], '.3f')}"))
    nve = record.get("nve")
    if nve:
        rows.append((f"NVE without filter, {nve['completed_ps']:g} ps: T start → end (K)",
                     f"{_f(nve.get('T_start_K'), '.1f')} → {_f(nve.get('T_end_K'), '.1f')} "
                     f"({_f(nve.get('T_drift_K'), '+.1f')} K){_run_status(nve)}"))
    stability = record.get("stability") or {}
    if stability.get("ran"):
        rows.append((f"stability, NVT with filter, {stability['length_ps']:g} ps",
                     "stable" if stability["stable"] else f"failed at {stability['failed_at_ps']:.2f} ps"))
    cost = record.get("cost")
    if cost:
        rows.append(("wall time per simulated ps: FlashMD / reference MD with the same classical potential (s)",
                     f"{_f(cost.get('flashmd_s_per_ps'), '.2f')} / {_f(cost.get('reference_s_per_ps'), '.2f')} "
                     f"(speedup {_f(cost.get('speedup'), '.2f')}×; {cost.get('flashmd_source', '')})"))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", help="bundled name, <system>-<N>fs (e.g. water-16fs)")
    parser.add_argument("run_dir", help="output directory of 'openmm-flashmd train'")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing bundled model")
    args = parser.parse_args()

    import openmm_flashmd  # noqa: F401
    from openmm_flashmd.model.protocol import load_model, read_metadata
    from openmm_flashmd.train.card import model_card

    source = Path(args.run_dir) / "model.pt"
    target = MODELS / f"{args.name}.pt"
    if not source.exists():
        raise SystemExit(f"{source} does not exist")
    if source.stat().st_size > MAX_BYTES:
        raise SystemExit(f"{source} is {source.stat().st_size / 2**20:.1f} MiB; bundled models must be ≤ 5 MB")
    stride_fs = read_metadata(load_model(source))["stride"] * 1000
    if not args.name.endswith(f"-{stride_fs:g}fs"):
        raise SystemExit(f"{args.name!r} does not end in the model's stride (-{stride_fs:g}fs)")
    if target.exists() and not args.overwrite:
        raise SystemExit(f"{target} exists; pass --overwrite to replace it")
    MODELS.mkdir(exist_ok=True)
    shutil.copyfile(source, target)

    record = VALIDATION / f"{args.name}.json"
    dynamics = None
    if record.exists():
        data = json.loads(record.read_text())
        dynamics = {"lengths": data.get("lengths_mode"), "card_rows": dynamics_rows(data)}
    system = re.sub(r"-\d+fs$", "", args.name)
    card = model_card(target, args.name, reproduce=recipe(args.name), dynamics=dynamics, notes=NOTES.get(system))
    target.with_suffix(".md").write_text(card)
    print(f"bundled {target} ({target.stat().st_size / 2**20:.2f} MiB) and {target.with_suffix('.md').name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
