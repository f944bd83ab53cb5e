"""A System the package has never seen, from scratch: build it, generate reference data, train
a stride model, validate it against reference MD, and read the verdicts.

    python examples/validate_your_system.py OUT_DIR [--quick] [--overwrite]

The System: rigid TIP3P water with NaCl at about 1 mol/L (one Na+ and one Cl- among about 60
waters, a 1.25 nm box) built with OpenMM's ``Modeller.addSolvent`` (amber14 + tip3p, PME,
cutoff 0.55 nm, SETTLE),
serialized to ``OUT_DIR/system.xml`` and ``OUT_DIR/start.pdb``. Then three commands, printed
as they run:

1. ``openmm-flashmd generate`` reference NVE segments (1 fs velocity Verlet),
2. ``openmm-flashmd train`` an 8 fs PET stride model,
3. ``openmm-flashmd validate`` it on the same System: per-element temperatures with and
   without the energy filter, RDFs of every element pair, water self-diffusion, NpT density,
   NVE drift, cost; ``OUT_DIR/validation/report.md`` says which checks pass.

The default lengths train for about an hour and validate for several hours on 2 CPU cores;
``--quick`` (what the tests run) takes minutes and only shows that the pipeline works: a model
trained for 30 steps fails most checks, and the report says so.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

from openmm import Vec3, XmlSerializer, app, unit

#: (generate, train, validate) arguments of the full and the quick pipeline.
SETTINGS = {
    "full": (["--n-segments", "60", "--segment-length", "0.5", "--decorrelate", "0.5"],
             ["--set", "training.max_steps=6000"], ["--lengths", "full"]),
    "quick": (["--n-segments", "3", "--segment-length", "0.1", "--thermalize", "0.1", "--decorrelate", "0.05"],
              ["--set", "training.max_steps=30", "--set", "training.validate_every=15", "--set", "model.d_pet=16",
               "--set", "model.d_node=16", "--set", "model.d_feedforward=16", "--set", "training.batch_size=2"],
              ["--lengths", "quick", "--no-stability"]),
}


def build_saline_box(out_dir: Path) -> None:
    """Write ``system.xml`` and ``start.pdb`` of the NaCl solution into ``out_dir``."""
    forcefield = app.ForceField("amber14-all.xml", "amber14/tip3p.xml")
    modeller = app.Modeller(app.Topology(), [])
    modeller.addSolvent(forcefield, boxSize=Vec3(1.25, 1.25, 1.25) * unit.nanometer, positiveIon="Na+",
                        negativeIon="Cl-", ionicStrength=1.0 * unit.molar)
    system = forcefield.createSystem(modeller.topology, nonbondedMethod=app.PME, nonbondedCutoff=0.55 * unit.nanometer,
                                     rigidWater=True)
    (out_dir / "system.xml").write_text(XmlSerializer.serialize(system))
    with open(out_dir / "start.pdb", "w") as handle:
        app.PDBFile.writeFile(modeller.topology, modeller.positions, handle)


def openmm_flashmd(*args: str) -> None:
    """Run one ``openmm-flashmd`` command, echoed, in this Python."""
    print("$ openmm-flashmd " + " ".join(args), flush=True)
    subprocess.run([sys.executable, "-m", "openmm_flashmd.cli", *args], check=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--quick", action="store_true", help="tiny settings: minutes, shows the pipeline only")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing OUT_DIR")
    args = parser.parse_args(argv)
    out = args.out_dir
    if out.exists():
        if not args.overwrite:
            raise SystemExit(f"{out} exists; pass --overwrite to replace it")
        shutil.rmtree(out)
    out.mkdir(parents=True)
    generate, train, validate = SETTINGS["quick" if args.quick else "full"]

    build_saline_box(out)
    files = ["--system", str(out / "system.xml"), "--structure", str(out / "start.pdb")]
    openmm_flashmd("generate", str(out / "data.h5"), *files, "--timestep", "0.001", "--temperature", "300",
                   "--platform", "CPU", "--quiet", *generate)
    openmm_flashmd("train", str(out / "data.h5"), str(out / "model"), "--stride", "0.008", "--device", "cpu",
                   "--quiet", *train)
    openmm_flashmd("validate", str(out / "model" / "model.pt"), *files, "--out", str(out / "validation"),
                   "--cache", str(out / "reference-cache"), "--quiet", *validate)

    result = json.loads((out / "validation" / "validation.json").read_text())
    print(f"\n{out / 'validation' / 'report.md'}: System {result['system']}, {result['n_atoms']} atoms; RDF pairs "
          + ", ".join(result.get("rdf", {})))
    return 0


if __name__ == "__main__":
    sys.exit(main())
