"""Command line: one subcommand per pipeline stage; each Snakemake rule makes one call.

Each stage module declares its own commands (`COMMANDS`, see `cosmoforge.declare`); this module
only finds them and parses. `cosmoforge STAGE ...` imports the one module that declares STAGE,
so a job starts without loading every stage's dependencies.

Structured settings (a config section) are passed as one JSON argument, so a rule hands over
exactly the part of the config it depends on, and Snakemake reruns a job when that part changes.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from .declare import Command, declared
from .errors import CosmoforgeError

FLAG_VOCABULARY = """\
Flags mean the same in every command:
  --settings JSON   the stage's settings: its config section (or the part of it the rule
                    passes; `snakemake -n -p` prints each job's exact command)
  --out PATH        the stage's one output file
  --out-dir PATH    the stage's output folder
  --report PATH     the stage's own JSON report (an output)
  --stats PATH      the per-shard statistics (an output)
  other inputs are named for what they are: --seeds, --embeddings, --fit-report, --stayed, ...
"""


def stage_commands(name: str | None = None) -> list[Command]:
    """The declared commands: all of them, or those of the module that declares `name`."""
    where = declared("Command")
    modules = [where[name]] if name in where else sorted(set(where.values()))
    return [c for m in modules for c in importlib.import_module(m).COMMANDS]


def _add_arguments(parser: argparse.ArgumentParser, arguments: dict[str, dict]) -> None:
    for flag, spec in arguments.items():
        parser.add_argument(flag, **spec)


def build_parser(commands: list[Command] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cosmoforge",
        description=__doc__,
        epilog=FLAG_VOCABULARY,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in sorted(commands or stage_commands(), key=lambda c: c.name):
        p = sub.add_parser(command.name, help=command.help, description=command.description)
        p.set_defaults(func=command.run)
        if not command.stages:
            _add_arguments(p, command.arguments)
            continue
        # Each stage has the shared arguments and exactly its own, required where it needs
        # them, so `topics fit` without --embeddings is refused here, not deep inside.
        stages = p.add_subparsers(dest="stage", required=True)
        for stage, arguments in command.stages.items():
            _add_arguments(stages.add_parser(stage), {**command.arguments, **arguments})
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    wanted = next((a for a in argv if not a.startswith("-")), None)
    args = build_parser(stage_commands(wanted)).parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        args.func(args)
    except CosmoforgeError as exc:
        print(f"cosmoforge {args.command}: error: {exc}", file=sys.stderr)
        return getattr(exc, "exit_code", 2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
