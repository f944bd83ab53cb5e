"""Average the weights of two stride models trained from the same start ("model soup").

    python examples/models/average_weights.py FIRST SECOND WEIGHT OUT [--overwrite]

Writes ``(1 - WEIGHT) * FIRST + WEIGHT * SECOND`` (model files or bundled names) to ``OUT``
with :func:`openmm_flashmd.train.average_models` (same architecture, stride and elements
required), e.g. a model and a fine-tune of it that errs the other way.
"""

import argparse
import sys

from openmm_flashmd.train import average_models, export_model


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("first")
    parser.add_argument("second")
    parser.add_argument("weight", type=float, help="share of SECOND, between 0 and 1")
    parser.add_argument("out")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    try:
        model = average_models(args.first, args.second, args.weight)
        export_model(model, args.out, overwrite=args.overwrite)
    except (ValueError, FileExistsError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"wrote {args.out}: (1 - {args.weight:g}) x {args.first} + {args.weight:g} x {args.second}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
