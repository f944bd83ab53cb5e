"""``openmm-flashmd validate``: checks its input, runs :func:`~openmm_flashmd.validation.validate`
into an output folder (locked; refused when it holds a validation unless ``--overwrite`` or
``--resume``) and writes ``validation.json``, ``report.md`` and the plots there."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import List

from openmm_flashmd.validation.target import ValidationError, system_from_model_name

#: What the command writes into its output folder (besides plots and work/).
RESULT, REPORT = "validation.json", "report.md"


def validate_command(args: argparse.Namespace) -> List[str]:
    """Run the command; returns the texts of the checks that failed."""
    import torch

    from openmm_flashmd import load_model, read_metadata
    from openmm_flashmd.data.schema import package_versions
    from openmm_flashmd.run_files import OutputLock
    from openmm_flashmd.validation import Target, default_cache_dir, validate, verdicts, write_report
    from openmm_flashmd.validation.checks import status

    out = Path(args.out)
    if (out / "work").exists() or (out / RESULT).exists():
        if not (args.overwrite or args.resume):
            raise ValidationError(f"{out} holds a validation; pass --overwrite to replace it or --resume to continue it")
    elif args.resume:
        raise ValidationError(f"nothing to resume in {out}")
    try:
        model = load_model(args.model)
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        raise ValidationError(f"cannot load the model {args.model}: {str(exc).splitlines()[0]}") from None
    if args.threads:
        torch.set_num_threads(args.threads)
    system = args.system or system_from_model_name(args.model)
    if system is None:
        raise ValidationError(f"cannot tell the System from the model name {args.model!r}; pass --system")
    target = Target.from_files(system, args.structure, temperature=args.temperature,
                               reference_timestep=args.reference_timestep, pressure=args.pressure,
                               model_metadata=read_metadata(model), threads=args.threads, fallback=args.fallback,
                               progress=not args.quiet)
    target.check_model(model)  # before anything is written
    out.mkdir(parents=True, exist_ok=True)
    with OutputLock(out):
        if args.overwrite:
            for stale in (out / RESULT, out / REPORT):
                stale.unlink(missing_ok=True)
        stack = {"packages": package_versions(), "torch_threads": torch.get_num_threads()}
        path = validate(model, target, out, stem=Path(RESULT).stem, lengths_mode=args.lengths,
                        cache_dir=Path(args.cache) if args.cache else default_cache_dir(), work_dir=out / "work",
                        stability=args.stability, stability_reason="--no-stability" if not args.stability else "default",
                        collision_rate=args.collision_rate, resume=args.resume, model_source=args.model,
                        reference_by_settings=True, stack=stack)
        result = json.loads(path.read_text())
        report = write_report(result, out / REPORT)
    checks = verdicts(result)
    for check in checks:
        print({"passed": "PASS", "failed": "FAIL", "not judged": "N/J ", "information": "INFO"}[status(check)]
              + "  " + check["text"])
    print(f"wrote {path} and {report}")
    return [c["text"] for c in checks if c["passed"] is False]
