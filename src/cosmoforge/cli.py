"""Command line: one subcommand per pipeline stage or ops tool; each Snakemake rule makes one call.

`COMMAND_MODULES` is the table of every command and the module that declares it (its
`COMMANDS`): `cosmoforge STAGE ...` imports that one module, so a job starts without loading
every stage's dependencies (and runs in a rule env that has only its own).

Structured settings (a config section) are passed as one JSON argument, so a rule hands over
exactly the part of the config it depends on, and Snakemake reruns a job when that part changes.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from cosmoforge.core.declare import Command
from cosmoforge.core.errors import CosmoforgeError

# Every command, in pipeline order, and the module that declares it.
COMMAND_MODULES = {
    "seeds": "cosmoforge.stages.seeds",
    "topics": "cosmoforge.stages.topics",
    "prompts": "cosmoforge.stages.prompts",
    "convert-model": "cosmoforge.engines.model",
    "generate": "cosmoforge.stages.generate",
    "dedup": "cosmoforge.stages.dedup",
    "dedup-report": "cosmoforge.stages.dedup",
    "benchmark-index": "cosmoforge.stages.decont.index",
    "decontaminate": "cosmoforge.stages.decont.step",
    "contamination-report": "cosmoforge.stages.decont.report",
    "release": "cosmoforge.stages.release",
    "finish-shard": "cosmoforge.stages.finish",
    "ledger": "cosmoforge.reports.ledger",
    "explain": "cosmoforge.reports.ledger",
    "card": "cosmoforge.reports.card",
    "check": "cosmoforge.ops.checks",
    "config": "cosmoforge.ops.checks",
    "plan": "cosmoforge.ops.plan",
    "status": "cosmoforge.ops.status",
    "calibrate": "cosmoforge.ops.calibrate",
    "canary": "cosmoforge.ops.canary",
    "serve": "cosmoforge.ops.serve",
}

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
    """The commands of the table: all of them, or those of the module that declares `name`."""
    if name in COMMAND_MODULES:
        modules = [COMMAND_MODULES[name]]
    else:
        modules = list(dict.fromkeys(COMMAND_MODULES.values()))
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
