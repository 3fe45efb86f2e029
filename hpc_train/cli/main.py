"""`hpc-train`: YAML job specs to SLURM jobs, local runs, status, results."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from hpc_train import __version__
from hpc_train.errors import UserError

VERBS = ["init", "validate", "render", "run", "launch", "submit", "status", "wait", "results", "logs", "list", "cancel",
         "monitor", "plot", "sweep", "best", "pipeline", "doctor"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hpc-train", description=__doc__)
    parser.add_argument("--version", action="version", version=f"hpc-train {__version__}")
    parser.add_argument("--home", help="registry folder (default $HPC_TRAIN_HOME or ~/.hpc-train)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more; show tracebacks")
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for verb in VERBS:
        importlib.import_module(f"hpc_train.cli.{verb}").add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="hpc-train: %(levelname)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        if args.verbose:
            logging.getLogger("hpc_train").exception("user error")
        print(f"hpc-train: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:  # `hpc-train results ID | head`
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("hpc-train: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
