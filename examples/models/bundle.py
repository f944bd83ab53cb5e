"""Put a trained stride model into the package and write its model card.

    python examples/models/bundle.py water-16fs runs/water-16fs [--overwrite]

Takes ``RUN_DIR/model.pt`` (from ``openmm-flashmd train``), refuses models over 5 MB,
saves it to ``openmm_flashmd/models/NAME.pt`` rebuilt under this version's model code (same
weights and metadata: :func:`openmm_flashmd.train.export.model_from_file`) and writes ``NAME.md``: data, stride,
hyper-parameters from the model's metadata, held-out errors (from
``benchmarks/results/held_out/NAME.json``, written by ``openmm-flashmd evaluate``, when it
exists, else from the metadata), the dynamics validation
(the model's ``card_rows`` in ``benchmarks/results/validation.json``) when it exists, and the exact commands
quoted from ``examples/models/build_all.sh``.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from openmm_flashmd.model.bundled import split_model_name

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
MODELS = ROOT / "openmm_flashmd" / "models"
VALIDATION = ROOT / "benchmarks" / "results" / "validation.json"
HELD_OUT = ROOT / "benchmarks" / "results" / "held_out"
MAX_BYTES = 5 * 1024 * 1024

GUESS_CORE = ("This model corrects the frozen-force Verlet guess (`openmm_flashmd.integrator.guess`; the guess "
              "columns of the table above give the guess's own errors), which FlashMDIntegrator computes on the "
              "platform before every stride: its held-out errors are several times below free flight and its KE "
              "ratios near 1")
GUESS = (GUESS_CORE + ", and `openmm-flashmd evaluate` finds its energy error per stride nearly unbiased on "
         "reference states. In a simulation it still heats up: small errors compound on states off the data's "
         "manifold, the energy filter removes the excess with one common factor, and the hydrogens (rotations) end "
         "up hot and the oxygens cold (the README's training ablation table and the dynamics table below). "
         "Noise injection during training (`data.input_noise`) did not fix that in one try. Do not use it for "
         "science. ")
RIGID_WATER = ("Trained on 64 rigid TIP3P waters (SETTLE) at 300 K only; refuses flexible water (its metadata "
               "records the constraints). ")
NOTES = {
    "water-rigid-16fs": GUESS_CORE + ". " + RIGID_WATER + "`water-rigid-8fs`'s network and weights at twice "
                        "its stride, trained with the time-reversal loss (`loss.reversal`) and the per-element "
                        "kinetic-energy term on the velocities RATTLE keeps (`loss.kinetic_energy`) from the first "
                        "step, then 1000 steps with a three-stride and 1000 with a four-stride rollout loss "
                        "(`loss.rollout`: OpenMM constrains each predicted state and computes its Verlet guess on "
                        "the data's System, as the integrator does). With the filter, over the 950 ps after the "
                        "measured run of its validation, its hydrogens are +1.3 +- 1.1 K and its oxygens "
                        "+0.3 +- 2.4 K from reference MD and the overall temperature +0.9 +- 0.8 K from 300 K; in "
                        "four 100 ps `simulate` runs hydrogens +1.9 K and oxygens -0.7 K on average (the three-stride "
                        "model bundled 2026-12-05 to 2026-12-06: +3.7 / -5.9 K). Its first validation's 50 ps window "
                        "read -7.3 K overall, with oxygens at -9.5 K: single 50 ps windows scatter by several K. "
                        "Without the filter its runs cool by 8-10 K. The blog's 258-water NVE run warms by 17-25 K "
                        "from three independent starts (+20.1 +- 2.6 K), with 8-12 % of its strides rejected by the "
                        "stride monitor and run as MD. Each "
                        "stride costs about three times a free-flight model's (the Verlet guess takes four force "
                        "evaluations). Do not use it for science yet.",
    "water-rigid-8fs": GUESS_CORE + ". " + RIGID_WATER + "The model bundled until 2026-12-06 (its last stage with "
                       "the time-reversal loss, `loss.reversal`) ran its hydrogens hot and its oxygens cold under the "
                       "energy filter: its strides turned the molecules into orientations of too high potential "
                       "energy on the states of its own runs (+2.8 kJ/mol per stride), and energy moved from the "
                       "molecules' translation into their rotation (278-280 / 313-316 K in 60 ps runs). This one adds "
                       "one on-policy round (`examples/models/onpolicy_rounds.py`): reference segments of three "
                       "strides from states that model reaches in its own runs, and 1500 steps on them with the "
                       "per-element kinetic-energy term (`loss.kinetic_energy`) and the potential-energy term "
                       "(`loss.potential_energy`: the predicted positions' potential energy on the data's System "
                       "against the reference's). On its own states the orientations' error is -0.23 kJ/mol per "
                       "stride; in its validation with the filter, over the 948 ps of its 1 ns stability run after "
                       "the measured window (stable, no strides rejected), hydrogens are -0.8 +- 1.1 K and oxygens +1.5 +- 2.3 K from "
                       "reference MD, the overall temperature -0.5 +- 0.6 K from 300 K, the molecules' translation "
                       "300.6 K and rotation 298.5 K; without the filter its 50 ps run reads -4.7 K overall (the model "
                       "before: +46 K). The blog's 258-water NVE run without the filter heats by 19-28 K in "
                       "50 ps from three independent starts (+23.7 +- 2.6 K) with 8-10 % of its strides run as MD "
                       "(the model before: 9 K with 44 % as MD, one start). Do not use "
                       "it for science yet.",
    "water-rigid-4fs": GUESS + RIGID_WATER + "Started from `water-rigid-8fs`'s weights (those bundled until "
                       "2026-12-04, before its time-reversal stage) at half its stride: its held-out velocity "
                       "errors are about 4x smaller than that model's. Its last 1500 training steps added the "
                       "time-reversal loss (`loss.reversal`, as `water-rigid-8fs`'s): with the filter hydrogens and "
                       "oxygens came from +7 / -11 K to +5 / -6 K of reference MD, without it the run heats by "
                       "23 K instead of 48 K (the model bundled before, 2026-12-04; the dynamics table below). "
                       "Both elements are inside the per-element goal of 10 K, not yet inside the trust check's "
                       "5 K for oxygens, and at 4 fs it is slower than the classical potential it learned from.",
    "alanine-dipeptide-implicit-hbonds-8fs": (
        "This model corrects the multiple-time-step Verlet guess (`openmm_flashmd.integrator.guess`): at each of "
        "its 4 substeps of 2 fs the bonded forces (HarmonicBondForce, HarmonicAngleForce, PeriodicTorsionForce, "
        "which FlashMDIntegrator moves to a force group of their own) are computed again, while the nonbonded and "
        "GB forces stay at their values at the start of the stride. That guess alone is 18-49x closer to reference "
        "MD than the frozen-force guess (the guess columns above), but as a stride of its own it heats by +2.3 kJ/mol "
        "per stride and explodes within picoseconds; the network learns what it misses. Trained on alanine "
        "dipeptide in OBC2 implicit solvent with X-H bonds constrained (amber14, `constraints=HBonds`) at 300 K "
        "only, 6000 steps from scratch on one CPU thread (16 min); it refuses a System without those bonded forces "
        "or constraints. Its dynamics are in the table below; what it has not been tested on (other peptides, "
        "other temperatures, explicit solvent) it has not seen."),
    "alanine-dipeptide-implicit-hbonds-16fs": (
        "The 8 fs model's recipe at 16 fs (the multiple-time-step guess in 8 substeps of 2 fs, 6000 steps from "
        "scratch), then 2000 steps with a two-stride rollout loss (`loss.rollout`): without that stage its single "
        "strides were as good but its runs stayed in the beta/PPII basin and exploded without the filter. Trained "
        "on the same data and refuses the same Systems as `alanine-dipeptide-implicit-hbonds-8fs`; its dynamics "
        "are in the table below."),
}


def recipe(name: str) -> str:
    """The commands of ``build_all.sh`` that make ``name``: its data block and its training block."""
    script = (HERE / "build_all.sh").read_text()
    system, _ = split_model_name(name)

    def block(key: str) -> str:
        match = re.search(rf"# >>> {re.escape(key)}\n(.*?)# <<< {re.escape(key)}", script, re.S)
        if match is None:
            raise SystemExit(f"build_all.sh has no block '# >>> {key}'")
        return match.group(1).strip()

    own = block(name)
    # the data block the model's block names ("# data: <block>"), else its system's (data-<system>)
    named = re.search(r"^# data: (\S+)$", own, re.M)
    blocks = [block(named.group(1) if named else f"data-{system}"), own,
              f'python examples/models/bundle.py {name} "$WORK/{name}" --overwrite']
    return "# from the repository root\nexport OMP_NUM_THREADS=1 WORK=bundled-work\n" + "\n".join(blocks)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", help="bundled name, <system>-<N>fs (e.g. water-16fs)")
    parser.add_argument("run_dir", help="output directory of 'openmm-flashmd train'")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing bundled model")
    args = parser.parse_args()

    import openmm_flashmd  # noqa: F401
    from openmm_flashmd.model.protocol import load_model, read_metadata, save_model
    from openmm_flashmd.train.card import model_card
    from openmm_flashmd.train.export import model_from_file

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
    save_model(model_from_file(source), target, overwrite=True)

    validated = json.loads(VALIDATION.read_text())["models"] if VALIDATION.exists() else {}
    dynamics = None
    if args.name in validated:
        data = validated[args.name]
        dynamics = {"lengths": data.get("lengths_mode"), "card_rows": data["card_rows"]}
    held_out_file = HELD_OUT / f"{args.name}.json"
    held_out = json.loads(held_out_file.read_text()) if held_out_file.exists() else None
    system, _ = split_model_name(args.name)
    card = model_card(target, args.name, reproduce=recipe(args.name), dynamics=dynamics,
                      notes=NOTES.get(args.name, NOTES.get(system)), held_out=held_out)
    target.with_suffix(".md").write_text(card)
    print(f"bundled {target} ({target.stat().st_size / 2**20:.2f} MiB) and {target.with_suffix('.md').name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
