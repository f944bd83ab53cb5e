"""Command line interface: ``openmm-flashmd <command> ...``.

Each command is two small functions, ``add_<name>_arguments(parser)`` and
``run_<name>(args) -> int``, registered in :data:`COMMANDS`; add a command by writing
both and adding one entry.

Examples::

    openmm-flashmd generate water.h5 --system water --n-segments 50 --segment-length 1.0
    openmm-flashmd generate data.h5 --system system.xml --structure start.pdb --temperature 300
    openmm-flashmd train water.h5 runs/water-16fs --stride 0.016 --set training.max_steps=5000
    openmm-flashmd evaluate runs/water-16fs/model.pt water.h5 --json errors.json
    openmm-flashmd train-mlip water.h5 runs/water-mlip --set training.max_steps=5000
    openmm-flashmd evaluate-mlip runs/water-mlip/model.pt water.h5 --json mlip-errors.json
    openmm-flashmd validate runs/water-16fs/model.pt --system system.xml --structure start.pdb --out validation
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable, Dict, List, Optional, Tuple

from openmm_flashmd.messages import error_line


# ------------------------------------------------------------------------ generate

def add_generate_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("output", help="HDF5 file to write")
    p.add_argument("--system", help="built-in name (water, alanine-dipeptide-implicit, argon) or a System XML file "
                                    "(optional with --resume)")
    p.add_argument("--structure", help="PDB/PDBx file or State XML (default: the built-in structure)")
    p.add_argument("--temperature", type=float, help="K (default: the built-in system's)")
    p.add_argument("--timestep", type=float, help="velocity-Verlet step, ps (default 0.0005)")
    p.add_argument("--record-interval", type=float, help="ps between stored frames (default 0.004)")
    p.add_argument("--n-segments", type=int, help="number of NVE segments (default 10)")
    p.add_argument("--segment-length", type=float, help="ps per segment (default 0.5)")
    p.add_argument("--thermalize", type=float, help="ps of Langevin before the first segment (default 10)")
    p.add_argument("--decorrelate", type=float, help="ps of Langevin between segments (default 1)")
    p.add_argument("--friction", type=float, help="Langevin friction, 1/ps (default 1)")
    p.add_argument("--seed", type=int, help="random seed (default 0)")
    p.add_argument("--platform", help="OpenMM platform (Reference, CPU, CUDA, OpenCL)")
    p.add_argument("--no-minimize", action="store_true", help="skip energy minimisation")
    p.add_argument("--max-new-segments", type=int, help="stop after this many segments (chunked jobs)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--overwrite", action="store_true", help="replace an existing output")
    g.add_argument("--resume", action="store_true", help="continue an existing output")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _data_files(files: List[str]):
    """One trajectory file as a path, several as a list (what train/train_mlip take)."""
    return files[0] if len(files) == 1 else files


def _segments(text: Optional[str]):
    """``--segments``: None, ``"all"``, or comma-separated segment indices -> list of int."""
    if text is None or text == "all":
        return text
    return [int(s) for s in text.split(",") if s.strip()]


def _print_training_summary(result) -> None:
    print(f"{result.steps} steps, best validation loss {result.best_validation_loss:.4g} at step {result.best_step}"
          + (" (stopped early)" if result.stopped_early else ""))


def run_generate(args: argparse.Namespace) -> int:
    from openmm_flashmd.data.generate import generate

    path = generate(
        args.output, args.system, args.structure, temperature=args.temperature, timestep=args.timestep,
        record_interval=args.record_interval, n_segments=args.n_segments, segment_length=args.segment_length,
        thermalize=args.thermalize, decorrelate=args.decorrelate, friction=args.friction, seed=args.seed,
        platform=args.platform, minimize=not args.no_minimize, overwrite=args.overwrite, resume=args.resume,
        max_new_segments=args.max_new_segments, progress=not args.quiet,
    )
    print(f"wrote {path}")
    return 0


# --------------------------------------------------------------------------- train

def add_train_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", nargs="+", help="trajectory file(s) from 'generate'")
    p.add_argument("output_dir", help="directory for logs, checkpoints and model.pt")
    p.add_argument("--stride", type=float, required=True, help="ps; a multiple of the record interval")
    p.add_argument("--stop-after", type=int, default=None, metavar="STEP",
                   help="stop at this step with a checkpoint, no export; continue later with --resume")
    p.add_argument("--hypers", help="YAML file updating the default hyper-parameters")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override one hyper-parameter (repeatable), e.g. training.max_steps=1000")
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:1 ...")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--overwrite", action="store_true", help="replace the outputs of an earlier run")
    g.add_argument("--resume", action="store_true", help="continue from output_dir/checkpoint.pt")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run_train(args: argparse.Namespace) -> int:
    from openmm_flashmd.train.trainer import train

    data = _data_files(args.data)
    result = train(data, args.output_dir, args.stride, hypers=args.hypers, overrides=args.overrides,
                   resume=args.resume, overwrite=args.overwrite, device=args.device, progress=not args.quiet,
                   stop_after=args.stop_after)
    _print_training_summary(result)
    if result.model_path is not None:
        print(f"model: {result.model_path}")
    elif args.stop_after is not None:
        print(f"stopped after step {result.steps}; continue with --resume")
    return 0


# ------------------------------------------------------------------------ evaluate

def add_evaluate_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="stride model file (or bundled model name)")
    p.add_argument("data", help="trajectory file")
    p.add_argument("--stride", type=float, help="ps (default: the model's)")
    p.add_argument("--segments", default=None,
                   help="'all', comma-separated segment indices, or omitted: the model's validation segments "
                        "when it was trained on this file, else all")
    p.add_argument("--max-pairs", type=int, default=2000, help="evaluate at most this many pairs (0 = all)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--device", default="cpu")
    p.add_argument("--rollout", type=int, default=1, metavar="R",
                   help="also apply the model R times to its own output and report the errors after each stride")
    p.add_argument("--no-frame-check", action="store_true",
                   help="skip the second prediction of every pair in a randomly turned frame (the frame dependence)")
    p.add_argument("--json", help="write the result to this JSON file")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --json file")


def run_evaluate(args: argparse.Namespace) -> int:
    from openmm_flashmd.train.evaluate import evaluate, format_table

    segments = _segments(args.segments)
    result = evaluate(args.model, args.data, stride=args.stride, segments=segments,
                      max_pairs=args.max_pairs or None, batch_size=args.batch_size, output_json=args.json,
                      overwrite=args.overwrite, device=args.device, rollout=args.rollout,
                      frame_check=not args.no_frame_check)
    print(format_table(result))
    return 0


# ---------------------------------------------------------------------- train-mlip

def add_train_mlip_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", nargs="+", help="trajectory file(s) from 'generate' (energies and forces are the targets)")
    p.add_argument("output_dir", help="directory for logs, checkpoints and model.pt")
    p.add_argument("--hypers", help="YAML file updating the default MLIP hyper-parameters")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override one hyper-parameter (repeatable), e.g. loss.forces=10")
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:1 ...")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--overwrite", action="store_true", help="replace the outputs of an earlier run")
    g.add_argument("--resume", action="store_true", help="continue from output_dir/checkpoint.pt")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run_train_mlip(args: argparse.Namespace) -> int:
    from openmm_flashmd.train.evaluate_mlip import format_mlip_table
    from openmm_flashmd.train.mlip import train_mlip

    data = _data_files(args.data)
    result = train_mlip(data, args.output_dir, hypers=args.hypers, overrides=args.overrides, resume=args.resume,
                        overwrite=args.overwrite, device=args.device, progress=not args.quiet)
    _print_training_summary(result)
    if "errors" in result.validation:
        print(format_mlip_table(result.validation["errors"]))
    if result.model_path is not None:
        print(f"model: {result.model_path}")
    return 0


# -------------------------------------------------------------------- evaluate-mlip

def add_evaluate_mlip_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="energy model file (model.pt from 'train-mlip')")
    p.add_argument("data", help="trajectory file")
    p.add_argument("--segments", default=None,
                   help="'all', comma-separated segment indices, or omitted: the model's validation segments "
                        "when it was trained on this file, else all")
    p.add_argument("--max-frames", type=int, default=2000, help="evaluate at most this many frames (0 = all)")
    p.add_argument("--frame-interval", type=int, default=None,
                   help="use every k-th frame (default: the model's, on its own training file; else 1)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", help="write the result to this JSON file")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --json file")


def run_evaluate_mlip(args: argparse.Namespace) -> int:
    from openmm_flashmd.train.evaluate_mlip import evaluate_mlip, format_mlip_table

    segments = _segments(args.segments)
    result = evaluate_mlip(args.model, args.data, segments=segments, max_frames=args.max_frames or None,
                           frame_interval=args.frame_interval, batch_size=args.batch_size, output_json=args.json,
                           overwrite=args.overwrite, device=args.device)
    print(format_mlip_table(result))
    return 0


# ------------------------------------------------------------------------ simulate

def add_simulate_arguments(p: argparse.ArgumentParser) -> None:
    # Run settings default to None, so that a --resume can tell what was given (it continues the run
    # in settings.json and refuses a different value); simulate fills in the defaults named here.
    p.add_argument("output_dir", nargs="?", default="flashmd-run", help="directory for all outputs (default flashmd-run)")
    p.add_argument("--system", help="built-in name or a System XML file (default water-rigid: 64 rigid TIP3P waters)")
    p.add_argument("--structure", help="PDB/PDBx or State XML (required with a System XML)")
    p.add_argument("--model", help="bundled model name or model file (default: the bundled model of a built-in system, "
                   "water-rigid-16fs for water-rigid)")
    p.add_argument("--ensemble", choices=["nve", "nvt", "npt"], help="default nvt")
    p.add_argument("--temperature", type=float, help="K (default: the system's, else 300)")
    p.add_argument("--pressure", type=float, help="bar, for npt (default 1)")
    p.add_argument("--collision-rate", type=float, help="1/ps (default 1)")
    p.add_argument("--time", type=float, help="simulated time, ps (default 400 for water-rigid, 10 for other systems; with --resume the new total)")
    p.add_argument("--report-interval", type=float, help="ps between frames, log rows and checkpoints (default 0.16)")
    p.add_argument("--format", choices=["dcd", "xtc"], help="trajectory format (default dcd)")
    p.add_argument("--splitting", help="splitting letters (default: from --ensemble)")
    p.add_argument("--platform", help="OpenMM platform (default: fastest available; may change on --resume)")
    p.add_argument("--seed", type=int, help="random seed of the starting velocities and the noise (default 0); "
                   "the same seed gives the same run")
    p.add_argument("--no-fallback", dest="fallback", action="store_const", const=False,
                   help="stop at a failed stride instead of integrating it with MD (the stride monitor)")
    p.add_argument("--fallback-timestep", type=float,
                   help="ps, longest substep of the fallback MD (default: the model's reference-data timestep)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--overwrite", action="store_true", help="replace the run in an existing output directory")
    g.add_argument("--resume", action="store_true",
                   help="continue the run in output_dir from its last checkpoint, with its settings")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run_simulate(args: argparse.Namespace) -> int:
    from openmm_flashmd.analysis.report import failed_checks, unjudged_checks
    from openmm_flashmd.simulate import simulate

    run = simulate(args.output_dir, system=args.system, structure=args.structure, model=args.model,
                   ensemble=args.ensemble, temperature=args.temperature, pressure=args.pressure,
                   collision_rate=args.collision_rate, duration=args.time, report_interval=args.report_interval,
                   trajectory_format=args.format, splitting=args.splitting, platform=args.platform, seed=args.seed,
                   fallback=args.fallback, fallback_timestep=args.fallback_timestep, overwrite=args.overwrite, resume=args.resume, progress=not args.quiet)
    print(f"{run.steps} strides; trajectory {run.trajectory}, log {run.log}, report {run.report}")
    failed = failed_checks(run.report)
    if failed:
        print(f"warning: {len(failed)} trust check(s) failed, do not use this run as dynamics of the system: "
              + "; ".join(failed), file=sys.stderr)
    unjudged = unjudged_checks(run.report)
    if unjudged:
        print(f"warning: {len(unjudged)} trust check(s) not judged, the run is too short: " + "; ".join(unjudged),
              file=sys.stderr)
    return 0


# ------------------------------------------------------------------------ validate

def add_validate_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="bundled model name or model file")
    p.add_argument("--system", help="built-in name or a System XML file (default: the system of a bundled model "
                                    "named <system>-<N>fs)")
    p.add_argument("--structure", help="PDB/PDBx file (positions and topology) or State XML; required with a System XML")
    p.add_argument("--temperature", type=float, help="K (default: the built-in system's, else the model's training data's)")
    p.add_argument("--pressure", type=float, help="bar, NpT of a periodic System (default 1)")
    p.add_argument("--reference-timestep", type=float,
                   help="ps, reference MD timestep (default: the built-in system's, else the model's training data's)")
    p.add_argument("--lengths", choices=["quick", "full"], default="full",
                   help="full (the real validation, hours on a CPU) or quick (minutes: shows the protocol runs)")
    p.add_argument("--collision-rate", type=float, default=1.0, help="FlashMD's Langevin friction, 1/ps (default 1; "
                   "reference MD keeps 1/ps)")
    p.add_argument("--no-stability", dest="stability", action="store_false",
                   help="skip the stability run (NVT with filter continued to 1 ns at full lengths)")
    p.add_argument("--no-fallback", dest="fallback", action="store_false",
                   help="FlashMD without the stride monitor (a failed stride ends a run)")
    p.add_argument("--out", default="flashmd-validation", help="output folder (default flashmd-validation)")
    p.add_argument("--cache", help="folder of cached reference MD, shared by validations "
                                   "(default $OPENMM_FLASHMD_CACHE or ~/.cache/openmm-flashmd/validation)")
    p.add_argument("--threads", type=int, help="OpenMM CPU and torch threads (default: theirs)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--overwrite", action="store_true", help="replace the validation in an existing output folder")
    g.add_argument("--resume", action="store_true", help="continue an interrupted validation in the output folder "
                   "(finished phases are kept, the stability run goes on from its last checkpoint)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def run_validate(args: argparse.Namespace) -> int:
    from openmm_flashmd.validation.command import validate_command

    failed = validate_command(args)
    if failed:
        print(f"warning: {len(failed)} check(s) failed: " + "; ".join(failed), file=sys.stderr)
    return 0


# ------------------------------------------------------------------------ dispatch

#: name -> (help, add_arguments, run)
COMMANDS: Dict[str, Tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]] = {
    "generate": ("generate NVE reference trajectories (HDF5)", add_generate_arguments, run_generate),
    "train": ("train a PET stride model", add_train_arguments, run_train),
    "evaluate": ("stride errors of a model vs free-flight baselines", add_evaluate_arguments, run_evaluate),
    "train-mlip": ("train a PET energy model (MLIP) on energies and forces", add_train_mlip_arguments,
                   run_train_mlip),
    "evaluate-mlip": ("energy and force errors of an MLIP vs trivial baselines", add_evaluate_mlip_arguments,
                      run_evaluate_mlip),
    "simulate": ("run FlashMD and write trajectory, log and report", add_simulate_arguments, run_simulate),
    "validate": ("judge a stride model on a System against reference MD with the same System",
                 add_validate_arguments, run_validate),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="openmm-flashmd", description="FlashMD long-stride learned MD for OpenMM")
    parser.add_argument("--traceback", action="store_true", help="show the full traceback on errors")
    sub = parser.add_subparsers(dest="command", metavar="command")
    sub.required = True
    for name, (help_text, add_arguments, _) in COMMANDS.items():
        add_arguments(sub.add_parser(name, help=help_text, description=help_text))
    return parser


#: how to continue each command after Ctrl-C (its checkpoints make a resume exact)
RESUME_HINTS = {
    "simulate": "continue with --resume (start again with --overwrite if it stopped while setting up)",
    "generate": "continue with the same command and --resume",
    "train": "continue from the last checkpoint with the same command and --resume",
    "train-mlip": "continue from the last checkpoint with the same command and --resume",
    "validate": "continue with the same command and --resume (finished phases are kept)",
}


def describe_error(err: BaseException) -> str:
    """One line for an error: the first line of an OpenMM message, the file of an OS error."""
    if isinstance(err, OSError) and err.strerror:
        return f"{err.strerror}: {err.filename}" if err.filename else err.strerror
    mark = getattr(err, "problem_mark", None)
    if mark is not None:  # a YAML syntax error: where, and what
        return f"invalid YAML in {mark.name}, line {mark.line + 1}, column {mark.column + 1}: {err.problem}"
    return error_line(err)


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of the ``openmm-flashmd`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    import openmm
    import yaml

    import openmm_flashmd  # noqa: F401  (loads torch before openmm plugins)

    try:
        return COMMANDS[args.command][2](args)
    except KeyboardInterrupt as err:
        if args.traceback:
            raise
        hint = str(err) or f"interrupted; {RESUME_HINTS.get(args.command, 'nothing to resume')}"
        print(f"openmm-flashmd {args.command}: {hint}", file=sys.stderr)
        return 130
    except (OSError, ValueError, RuntimeError, KeyError, openmm.OpenMMException, yaml.YAMLError) as err:
        if args.traceback:
            raise
        print(f"openmm-flashmd {args.command}: error: {describe_error(err)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
