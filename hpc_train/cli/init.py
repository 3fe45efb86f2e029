"""`hpc-train init [EXAMPLE] [PATH]`: write an example job spec to start from."""

from __future__ import annotations

import argparse
from pathlib import Path

from hpc_train.errors import UserError
from hpc_train.package_data import EXAMPLE_SPECS, example_spec


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("init", help="write an example job spec to start from",
                            description="Write one of the example specs shipped with hpc-train. "
                                        "An existing file is never overwritten.")
    parser.add_argument("example", nargs="?", default="quickstart", choices=EXAMPLE_SPECS,
                        help="quickstart: a random forest on digits; mlp: a torch MLP; "
                             "reference: every key with what it means (default: quickstart)")
    parser.add_argument("path", nargs="?", type=Path,
                        help="file (or existing folder) to write; default: ./EXAMPLE.yaml")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    target: Path = args.path or Path(f"{args.example}.yaml")
    if target.is_dir():
        target = target / f"{args.example}.yaml"
    try:
        with target.open("x", encoding="utf-8") as out:  # "x": refuse to overwrite, atomically
            out.write(example_spec(args.example))
    except FileExistsError:
        raise UserError(f"{target}: exists; hpc-train init never overwrites a file. "
                        "HINT: give another PATH, or remove the file first") from None
    except OSError as exc:
        raise UserError(f"{target}: cannot write the example spec: {exc.strerror}") from None
    print(f"{target}: written from the {args.example} example; "
          f"check it with `hpc-train validate {target}`")
    return 0
