"""How fast does the tiny PET stride model learn a STIFF bond?

Carbon dimers (``tests/flashmd_data_helpers.diatomics``) with a bond constant ``k``
(default 2e5 kJ/mol/nm^2: vibration period ~34 fs, rms bond fluctuation ~0.0035 nm,
about 1 % of the 0.3 nm cutoff). Trains the tiny PET of the tests for ``--steps``
steps with ``openmm_flashmd.train.train`` and prints, per ``--n-radial`` value, the
validation loss curve (1 ~ free flight / unchanged velocities) and the final
improvement over free flight measured by ``openmm_flashmd.train.evaluate``.

``--n-radial 0`` is the architecture without a radial basis (edge features
``r/rc, |r|/rc`` only), i.e. the model before the basis was added.

Usage (from the repository root)::

    python benchmarks/stiff_bond_learning.py --n-radial 0 8 --seeds 0 1 2

Units: nm, ps, Da, kJ/mol.
"""

import argparse
import csv
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from flashmd_data_helpers import TINY_MODEL, diatomics  # noqa: E402
from openmm_flashmd.data.generate import generate  # noqa: E402
from openmm_flashmd.train import evaluate, train  # noqa: E402

from _common import stack_info, write_json  # noqa: E402

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--k", type=float, default=2.0e5, help="bond constant, kJ/mol/nm^2")
    parser.add_argument("--stride", type=float, default=0.008, help="ps")
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--n-radial", type=int, nargs="+", default=[None],
                        help="values of model.n_radial to compare (omit: the code's default)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--json", default=None, help="write the results here")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --json file")
    args = parser.parse_args()
    if args.json and Path(args.json).exists() and not args.overwrite:
        raise SystemExit(f"{args.json} exists; pass --overwrite to replace it")
    torch.set_num_threads(1)

    work = Path(args.workdir or tempfile.mkdtemp(prefix="stiff_bond_"))
    work.mkdir(parents=True, exist_ok=True)
    data = work / f"dimers_k{args.k:g}.h5"
    if not data.exists():
        system, _, pos = diatomics(k=args.k)
        generate(data, system, pos, n_segments=16, temperature=300.0, timestep=0.0005, record_interval=0.002,
                 segment_length=0.2, thermalize=0.5, decorrelate=0.1, platform="Reference", progress=False)

    results = []
    for n_radial in args.n_radial:
        for seed in args.seeds:
            overrides = dict(TINY_MODEL)
            overrides.update({"training.max_steps": args.steps, "training.validate_every": max(1, args.steps // 4),
                              "training.checkpoint_every": args.steps, "training.warmup_steps": 20,
                              "training.learning_rate": 1e-2, "training.batch_size": 32,
                              "data.validation_fraction": 0.25, "training.seed": seed})
            if n_radial is not None:
                overrides["model.n_radial"] = n_radial
            run = work / f"run_nr{n_radial}_s{seed}"
            t0 = time.perf_counter()
            res = train(data, run, args.stride, overrides=overrides, device="cpu", progress=False, overwrite=True)
            wall = time.perf_counter() - t0
            rows = list(csv.DictReader(open(run / "log.csv")))
            ev = evaluate(res.model_path, data)
            entry = {
                "n_radial": n_radial, "seed": seed, "wall_s": round(wall, 1),
                "val_loss": [round(float(r["val_loss"]), 4) for r in rows],
                "best_val_loss": round(res.best_validation_loss, 4),
                "dq_improvement": round(ev["all"]["dq_improvement"], 2),
                "v_improvement": round(ev["all"]["v_improvement"], 2),
            }
            results.append(entry)
            print(json.dumps(entry), flush=True)
    if args.json:
        write_json(Path(args.json), {
            "benchmark": "stiff_bond_learning", "k_kjmol_nm2": args.k, "stride_ps": args.stride, "steps": args.steps,
            "model": "tests/flashmd_data_helpers.TINY_MODEL", "stack": stack_info(), "results": results,
        }, args.overwrite)


if __name__ == "__main__":
    main()
