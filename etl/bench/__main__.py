"""``python -m etl.bench``: the child processes of a benchmark (estate generation, a migration)."""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path

from etl.batch import write_json

# --------------------------------------------------------------------------- child entry point
from etl.bench.migration import _child_generate, _child_migrate


def _main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m etl.bench", description="bench child processes"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    generate = commands.add_parser("generate")
    generate.add_argument("--out", type=Path, required=True)
    generate.add_argument("--patients", type=int, required=True)
    generate.add_argument("--seed", type=int, required=True)
    generate.add_argument("--result", type=Path, required=True)
    child = commands.add_parser("migrate")
    child.add_argument("--home", type=Path, required=True)
    child.add_argument("--estate", type=Path, required=True)
    child.add_argument("--chunk-rows", type=int, required=True)
    child.add_argument("--label", required=True)
    child.add_argument("--as-of", type=dt.date.fromisoformat, required=True)
    child.add_argument("--result", type=Path, required=True)
    inputs = commands.add_parser("identity-inputs")
    inputs.add_argument("--estate", type=Path, required=True)
    inputs.add_argument("--home", type=Path, required=True)
    inputs.add_argument("--chunk-rows", type=int, required=True)
    inputs.add_argument("--as-of", type=dt.date.fromisoformat, required=True)
    inputs.add_argument("--out", type=Path, required=True)
    inputs.add_argument("--result", type=Path, required=True)
    resolve = commands.add_parser("identity-resolve")
    resolve.add_argument("--inputs", type=Path, required=True)
    resolve.add_argument("--repeats", type=int, default=1)
    resolve.add_argument("--result", type=Path, required=True)
    arguments = parser.parse_args(argv)
    if arguments.command == "identity-inputs":
        from etl.bench.identity_scale import prepare_inputs

        result = prepare_inputs(
            arguments.estate, arguments.home, arguments.chunk_rows, arguments.as_of, arguments.out
        )
    elif arguments.command == "identity-resolve":
        from etl.bench.identity_scale import resolve_inputs

        result = resolve_inputs(arguments.inputs, arguments.repeats)
    elif arguments.command == "generate":
        result = _child_generate(arguments.out, arguments.patients, arguments.seed)
    else:
        result = _child_migrate(
            arguments.home, arguments.estate, arguments.chunk_rows, arguments.label, arguments.as_of
        )
    write_json(arguments.result, result)


if __name__ == "__main__":
    _main()
