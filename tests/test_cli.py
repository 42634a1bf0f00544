"""The command line: the table of commands (cosmoforge.cli) and the modules' declarations."""

import importlib
import pkgutil
import subprocess
import sys

import pytest

import cosmoforge
from cosmoforge.cli import COMMAND_MODULES, build_parser, main, stage_commands


def _imported_declarations(attribute: str) -> dict[str, str]:
    """Name -> module of every declaration, found by importing every module of the package."""
    found = {}
    for info in pkgutil.walk_packages(cosmoforge.__path__, "cosmoforge."):
        if info.name == "cosmoforge.__main__":  # runs the CLI when imported
            continue
        module = importlib.import_module(info.name)
        for item in getattr(module, attribute, ()):
            assert item.name not in found, f"{item.name} declared twice"
            found[item.name] = info.name
    return found


def test_the_command_table_names_exactly_the_declared_commands():
    # The table the CLI starts from must agree with what the modules really declare: a command
    # missing from the table is one nobody can call.
    assert _imported_declarations("COMMANDS") == COMMAND_MODULES


def test_every_stage_has_a_command_with_help():
    commands = {c.name: c for c in stage_commands()}
    for name in ("seeds", "prompts", "generate", "finish-shard", "dedup", "topics", "card"):
        assert commands[name].help
    assert set(commands["dedup"].stages) == {"signatures", "buckets", "cluster", "filter"}
    assert set(commands["topics"].stages) == {
        "embed",
        "fit",
        "assign",
        "label",
        "decide",
        "report",
    }


def test_a_command_imports_only_its_own_module():
    # A generation job must not load numba (vLLM's CPU start-up crashes on llvmlite's objects,
    # see test_generate.py), nor pay for datatrove's imports.
    code = (
        "import sys\n"
        "from cosmoforge.cli import main\n"
        "try:\n"
        "    main(['generate', '--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = ('numba', 'datatrove', 'cosmoforge.stages.dedup')\n"
        "print(sorted(m for m in heavy if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip().splitlines()[-1] == "[]"


def test_a_stage_missing_a_required_argument_is_refused_by_the_parser(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["topics", "fit", "--settings", "{}", "--out", "c.npy", "--fit-report", "f.json"])
    assert exc.value.code == 2
    assert "--embeddings" in capsys.readouterr().err


def test_an_unknown_command_lists_the_declared_ones(capsys):
    with pytest.raises(SystemExit):
        main(["no-such-stage"])
    err = capsys.readouterr().err
    assert "invalid choice: 'no-such-stage'" in err
    assert "finish-shard" in err


def test_help_shows_every_command_and_the_flag_vocabulary():
    text = build_parser().format_help()
    for command in stage_commands():
        assert command.name in text
    assert "--settings JSON" in text


@pytest.mark.parametrize(
    "shards", ['{"run_name": "r"}', '{"run_name": "r", "shards": {"x": 0}}', "[]"]
)
def test_a_run_wide_command_refuses_a_malformed_shards_argument(shards, capsys, tmp_path):
    settings = '{"benchmarks": {}, "groups": {}, "ngram": 10, "threshold": 0.5}'
    argv = ["contamination-report", "--shards", shards, "--settings", settings]
    assert (
        main([*argv, "--out-csv", str(tmp_path / "c.csv"), "--out-json", str(tmp_path / "c.json")])
        == 2
    )
    assert (
        capsys.readouterr()
        .err.strip()
        .endswith(
            '--shards: expected {"run_name": NAME, "shards": {SPLIT: COUNT, ...}} with counts of 1 '
            "or more"
        )
    )
