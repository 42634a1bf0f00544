"""Errors that name what the user has to fix."""

from __future__ import annotations


class CosmoforgeError(Exception):
    """Base class: a problem with the user's input or configuration, shown without a traceback."""


class ConfigError(CosmoforgeError):
    pass


class SeedError(CosmoforgeError):
    """A seed row or seed file is unusable; the message names the file, row and field."""


class TemplateError(CosmoforgeError):
    pass


class TopicError(CosmoforgeError):
    """Topic clustering: bad settings, an unusable decisions file, stale assignments."""


class UnreadableFileError(CosmoforgeError):
    """An intermediate or input file that cannot be read (truncated, damaged, not parquet)."""


def yaml_error_line(path, exc) -> str:
    """'config.yaml: line 3, column 12: not valid YAML (expected ...)': one line, file first."""
    mark = getattr(exc, "problem_mark", None)
    where = f"{path}: line {mark.line + 1}, column {mark.column + 1}" if mark else str(path)
    problem = " ".join(
        str(p) for p in (getattr(exc, "context", None), getattr(exc, "problem", None)) if p
    )
    return f"{where}: not valid YAML ({problem or exc})"


class BenchmarkError(CosmoforgeError):
    """A benchmark file of decontamination that cannot be used."""


class EngineDied(CosmoforgeError):
    """The generation engine can no longer run (its process died, or it was stopped after it
    made no progress); the job may start a new one (stages/generate/supervise.py)."""
