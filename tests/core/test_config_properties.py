"""Configs drawn from the schema, with boundary, non-finite, path-like and wrongly typed values:
`check`, `plan` and the Snakemake dry run each accept a config with the same resolved values or
refuse it with lines that name the file and key, and never end in a traceback.

A drawn config is the resolved embedded default with one to three of its values replaced (or a
key removed, or an unknown key added), written as the user's own config file.
"""

from __future__ import annotations

import contextlib
import copy
import math
import re
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from cosmoforge.cli import main
from cosmoforge.core.config import check_inputs, resolve_config, schema_for, validate_config
from cosmoforge.core.config_checks import non_finite_keys
from cosmoforge.core.errors import CosmoforgeError
from cosmoforge.core.layout import Layout, stale_shard_files
from cosmoforge.ops.plan import build_plan, dry_run_lines
from tests.helpers import REPO, snakemake, workdir

BASE = resolve_config([REPO / "config" / "config.yaml"], base_dir=REPO)

ODD = [
    None,
    True,
    0,
    -1,
    1,
    2**31,
    1e308,
    -1e-9,
    math.nan,
    math.inf,
    -math.inf,
    "",
    " ",
    ".",
    "..",
    "a/b",
    "../outside",
    "/tmp/elsewhere",
    "with space",
    "ünïcode",
    "x" * 300,
    "all",
    [],
    {},
    ["..", "a/b"],
    {"unknown": 1},
]


def _schema_at(path: tuple) -> dict:
    """The subschema that validates the value at `path` ({} where the schema has none)."""
    try:
        return schema_for(".".join(str(p) for p in path))
    except KeyError:
        return {}


def _boundaries(schema: dict) -> list:
    """Values at and just past the schema's own limits, and its enum and default."""
    values = list(schema.get("enum", []))
    if "default" in schema:
        values.append(schema["default"])
    for limit in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        if limit in schema:
            bound = schema[limit]
            values += [bound, bound - 1, bound + 1, bound - 1e-9, bound + 1e-9]
    return values


def _leaves(value, path=()):
    """Paths of every value in the config: mappings are walked, and the first item of a list."""
    yield path
    if isinstance(value, dict):
        for key, sub in value.items():
            yield from _leaves(sub, (*path, key))
    elif isinstance(value, list) and value and isinstance(value[0], dict):
        yield from _leaves(value[0], (*path, 0))


PATHS = [p for p in _leaves(BASE) if p]


def _set(config, path, value) -> None:
    node = config
    for key in path[:-1]:
        node = node[key]
    if value is _DELETE:
        node.pop(path[-1]) if isinstance(node, dict) else None
    else:
        node[path[-1]] = value


_DELETE = object()


@st.composite
def drawn_configs(draw):
    config = copy.deepcopy(BASE)
    for _ in range(draw(st.integers(1, 2))):
        path = draw(st.sampled_from(PATHS))
        limits = _boundaries(_schema_at(path))
        # Half the changes stay inside the schema's own vocabulary (its limits, enums and
        # defaults), so that accepted configs are drawn as often as refused ones.
        if limits and draw(st.booleans()):
            value = draw(st.sampled_from(limits))
        else:
            value = draw(st.sampled_from([*ODD, _DELETE]))
        with contextlib.suppress(KeyError, IndexError, TypeError):  # a parent was replaced
            _set(config, path, value if value is _DELETE else copy.deepcopy(value))
    if draw(st.integers(0, 3)) == 0:
        with contextlib.suppress(KeyError, IndexError, TypeError):
            _set(config, (draw(st.sampled_from(["engine", "model", "sampling"])), "typo_key"), 1)
    return config


def write_config(folder: Path, config: dict) -> Path:
    path = folder / "mine.yaml"
    # Python's YAML dumper writes nan and inf as .nan and .inf, as a user would.
    path.write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
    return path


def outcome(path: Path, base_dir: Path) -> tuple[str, object]:
    """("ok", the dry run's plan lines) or ("refused", the message); anything else raises."""
    try:
        config = resolve_config([path], base_dir=base_dir)
        check_inputs(config, base_dir)
        stale_shard_files(config, base_dir)
        Layout(config).job_counts(base_dir)
        build_plan(config, base_dir)
        return "ok", dry_run_lines(config, base_dir)
    except CosmoforgeError as exc:
        return "refused", str(exc)


def assert_safe_to_run(config: dict) -> None:
    """What an accepted config must give: finite numbers only, every output of the run inside
    results/<run>/ and logs/<run>/, and values that validate again unchanged."""
    assert not non_finite_keys(config)
    layout = Layout(config)
    results, logs = Path("/base") / layout.results, Path("/base") / layout.logs
    assert results.resolve().parent == Path("/base/results") and results.name == config["run_name"]
    assert logs.resolve().parent == Path("/base/logs")
    for split in layout.splits:
        for shard in layout.shards(split):
            for output in (layout.prompt_shard(split, shard), layout.generated(split, shard)):
                assert (Path("/base") / output).resolve().is_relative_to(results)
            assert (
                (Path("/base") / layout.release_file(split, shard))
                .resolve()
                .is_relative_to(results)
            )
    assert validate_config(copy.deepcopy(config)) == config


def assert_names_file_and_key(message: str, path: Path) -> None:
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    if lines[0] == "invalid configuration:":
        lines = lines[1:]
        assert lines and all(re.match(rf"{re.escape(str(path))}: [^:]+: ", x) for x in lines)
    else:
        assert len(lines) == 1, message


@settings(
    max_examples=150,
    deadline=None,
    derandomize=True,  # the same examples on every run: CI is not a lottery
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(config=drawn_configs())
def test_check_and_plan_accept_or_refuse_with_lines_naming_file_and_key(config, tmp_path, capsys):
    path = write_config(tmp_path, config)
    kind, result = outcome(path, REPO)
    event(kind)
    if kind == "refused":
        assert_names_file_and_key(result, path)
    else:
        assert_safe_to_run(resolve_config([path], base_dir=REPO))
    for command in ("check", "plan"):
        code = main([command, "--configfile", str(path), "--base-dir", str(REPO)])
        printed = capsys.readouterr()
        assert code in (0, 2), printed.err
        assert code == 0 or printed.err.startswith(f"cosmoforge {command}: error: ")
        if kind == "refused":
            assert code == 2  # each command may stop at another of the problems
    if kind == "ok":
        assert main(["config", "--configfile", str(path), "--base-dir", str(REPO)]) == 0
        resolved = yaml.safe_load(capsys.readouterr().out)
        assert resolved == resolve_config([path], base_dir=REPO)


@pytest.mark.dryrun
@settings(
    max_examples=4,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(config=drawn_configs())
def test_snakemake_agrees_with_check_and_plan(config, tmp_path_factory):
    work = workdir(tmp_path_factory.mktemp("work"))
    path = write_config(work, config)
    kind, result = outcome(path, work)
    event(kind)
    proc = snakemake(work, "-n", "--configfile", str(path))
    printed = proc.stdout + proc.stderr
    assert "Traceback" not in printed, printed[-3000:]
    if kind == "ok":
        assert "\n".join(result) in proc.stderr, printed[-3000:]
    else:
        assert proc.returncode != 0
        assert result.splitlines()[-1].strip() in printed, printed[-3000:]
