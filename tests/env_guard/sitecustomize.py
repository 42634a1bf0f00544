"""Test-only: a `python -m cosmoforge COMMAND [STAGE]` process sees only the top-level modules
that the conda env of its rule provides, as if it ran in that env.

tests/test_envs.py puts this folder first on PYTHONPATH and names a JSON table in
COSMOFORGE_ENV_GUARD: {"COMMAND STAGE" or "COMMAND": {"env": file, "modules": [...]}}. Any other
process (Snakemake itself, pip) is left alone. A module outside the env is not found, by import
and by importlib.util.find_spec alike, exactly as where it is not installed; the name is appended
to COSMOFORGE_ENV_GUARD + ".refused" so the test can say which job wanted what.
"""

import json
import os
import sys


def _command_key(argv: list[str], table: dict) -> str | None:
    for i, word in enumerate(argv[:-1]):
        if word == "-m" and argv[i + 1] == "cosmoforge":
            words = argv[i + 2 : i + 4]
            if len(words) == 2 and f"{words[0]} {words[1]}" in table:
                return f"{words[0]} {words[1]}"
            return words[0] if words and words[0] in table else None
    return None


class _EnvFinder:
    """Wraps one meta-path finder: a module it finds in site-packages that the env does not
    provide is not found (the standard library and the checkout's own code are untouched)."""

    def __init__(self, finder, allowed: set[str], refused_log: str):
        self.finder, self.allowed, self.refused_log = finder, allowed, refused_log

    def find_spec(self, name, path=None, target=None):
        find = getattr(self.finder, "find_spec", None)
        spec = find(name, path, target) if find else None
        top = name.partition(".")[0]
        if spec is None or top in self.allowed or "site-packages" not in str(spec.origin):
            return spec
        with open(self.refused_log, "a", encoding="utf-8") as fh:
            fh.write(f"{' '.join(sys.orig_argv[1:5])}\t{top}\n")
        return None

    def __getattr__(self, attribute):
        return getattr(self.finder, attribute)


def _install() -> None:
    table_path = os.environ.get("COSMOFORGE_ENV_GUARD")
    if not table_path:
        return
    with open(table_path, encoding="utf-8") as fh:
        table = json.load(fh)
    key = _command_key(sys.orig_argv, table)
    if key is None:
        return
    allowed = set(table[key]["modules"])
    sys.meta_path[:] = [_EnvFinder(f, allowed, table_path + ".refused") for f in sys.meta_path]


_install()
