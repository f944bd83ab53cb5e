"""Write the bundled reference RDFs (and per-element temperatures) of a built-in water box from reference MD data.

    python examples/models/water_reference_rdf.py water64.h5 \
        openmm_flashmd/systems/data/water-reference-rdf.json

``water64.h5`` is the output of ``openmm-flashmd generate --system water`` (see
``examples/models/README.md`` for the exact command). Every ``--every``-th frame of every
complete segment is used; the JSON holds r (nm), g_OO and g_OH, the kinetic temperature of
each element (K, 3 degrees of freedom per atom, over all frames: with constraints these are
not the system temperature), the measured system temperature (K, 3N - constraints degrees of
freedom) and where they came from.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

import openmm_flashmd  # noqa: F401  (torch before the openmm plugins)
from openmm_flashmd.analysis.structure import radial_distribution
from openmm_flashmd.data import load_trajectories
from openmm_flashmd.data.guess import data_topology
from openmm_flashmd.systems.references import temperature_record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", help="HDF5 file from 'openmm-flashmd generate --system water'")
    parser.add_argument("output", help="JSON file to write")
    parser.add_argument("--every", type=int, default=10, help="use every n-th frame (default 10)")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args()
    output = Path(args.output)
    if output.exists() and not args.overwrite:
        raise SystemExit(f"{output} exists; pass --overwrite to replace it")

    import mdtraj

    data = load_trajectories(args.data)
    topology = mdtraj.Topology.from_openmm(data_topology(data))
    xyz = data.positions[:, :: args.every].reshape(-1, data.n_atoms, 3)
    boxes = data.box[:, :: args.every].reshape(-1, 3, 3)
    traj = mdtraj.Trajectory(xyz, topology)
    traj.unitcell_vectors = boxes
    r, g_oo = radial_distribution(traj, "O", "O")
    _, g_oh = radial_distribution(traj, "O", "H")
    output.write_text(json.dumps({
        "description": data.attrs.get("description", ""),
        "temperature_K": data.temperature,
        "source": f"{Path(args.data).name} (sha256 {data.sha256[:16]}), {traj.n_frames} frames "
                  f"({data.n_segments} NVE segments, every {args.every * data.record_interval:g} ps)",
        "r_nm": np.round(r, 6).tolist(),
        "g_OO": np.round(g_oo, 5).tolist(),
        "g_OH": np.round(g_oh, 5).tolist(),
        **temperature_record(data.velocities, data.masses, [atom.element.symbol for atom in topology.atoms],
                             len(data.constraints)),
    }, indent=1) + "\n")
    print(f"wrote {output} from {traj.n_frames} frames")


if __name__ == "__main__":
    main()
