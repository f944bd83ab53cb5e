"""Add the NpT reference density of a built-in water box to its bundled reference record.

    python examples/models/reference_density.py benchmarks/results/validation/reference-water-rigid.json \
        openmm_flashmd/systems/data/water-rigid-reference-rdf.json

The first file is the cached reference MD of ``python benchmarks/validate.py reference SYSTEM``
(Langevin NpT at 1 bar with a MonteCarloBarostat, the System of
:func:`openmm_flashmd.systems.get_system_for_barostat`); its density (g/cm³, mean ± block
standard error; pooled over its runs where ``validate.py npt reference`` added some) goes into the record as ``density_g_cm3``, which ``openmm-flashmd simulate
--ensemble npt`` judges a run against (:func:`openmm_flashmd.systems.references.reference_density`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reference", type=Path, help="reference-SYSTEM.json of benchmarks/validate.py")
    parser.add_argument("record", type=Path, help="the bundled reference record to update")
    args = parser.parse_args()
    reference = json.loads(args.reference.read_text())
    record = json.loads(args.record.read_text())
    if reference.get("system") and reference["system"] not in args.record.name:
        raise SystemExit(f"{args.reference} is the reference of {reference['system']!r}, not of {args.record.name}")
    npt = reference["npt"]
    density = npt["density_g_cm3"]
    settings = reference["settings"]
    runs = npt.get("runs") or []
    length = (f"{npt['pooled_length_ps']:g} ps in {len(runs)} runs"
              if len(runs) > 1 else f"{npt['length_ps']:g} ps")
    record["density_g_cm3"] = {
        "mean": round(density["mean"], 5), "sem": round(density["sem"], 5),
        "source": f"reference MD, Langevin NpT {settings['pressure_bar']:g} bar, {settings['temperature_K']:g} K, "
                  f"{length} ({args.reference.name}, benchmarks/validate.py)",
    }
    args.record.write_text(json.dumps(record, indent=1) + "\n")
    print(f"{args.record}: density {density['mean']:.4f} ± {density['sem']:.4f} g/cm³")


if __name__ == "__main__":
    main()
