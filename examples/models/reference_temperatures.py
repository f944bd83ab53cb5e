"""Write a built-in system's bundled reference temperatures from reference MD data.

    python examples/models/reference_temperatures.py ala-hbonds.h5 \
        openmm_flashmd/systems/data/alanine-dipeptide-implicit-hbonds-reference.json

The data file is the output of ``openmm-flashmd generate`` (``examples/models/build_all.sh``
has the exact command). All frames of all complete segments are used; the JSON holds the
kinetic temperature of each element (K, 3 degrees of freedom per atom: with constraints these
are not the system temperature), the measured system temperature (K, 3N - constraints degrees
of freedom) and where they came from. ``openmm-flashmd simulate`` judges per-element
temperatures of constrained runs against them (:mod:`openmm_flashmd.systems.references`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import openmm_flashmd  # noqa: F401  (torch before the openmm plugins)
from openmm_flashmd.data import load_trajectories
from openmm_flashmd.data.guess import data_topology
from openmm_flashmd.systems.references import temperature_record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", help="HDF5 file from 'openmm-flashmd generate'")
    parser.add_argument("output", help="JSON file to write")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args()
    output = Path(args.output)
    if output.exists() and not args.overwrite:
        raise SystemExit(f"{output} exists; pass --overwrite to replace it")
    data = load_trajectories(args.data)
    elements = [atom.element.symbol for atom in data_topology(data).atoms()]
    frames = data.n_segments * data.frames_per_segment
    output.write_text(json.dumps({
        "description": data.attrs.get("description", ""),
        "temperature_K": data.temperature,
        "source": f"{Path(args.data).name} (sha256 {data.sha256[:16]}), {frames} frames "
                  f"({data.n_segments} NVE segments, every {data.record_interval:g} ps)",
        **temperature_record(data.velocities, data.masses, elements, len(data.constraints)),
    }, indent=1) + "\n")
    print(f"wrote {output} from {frames} frames")


if __name__ == "__main__":
    main()
