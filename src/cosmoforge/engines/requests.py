"""What every engine takes and gives back: one request per prompt, one completion per request.
Its own module so that the engines (vLLM, fake, a server) share it without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Request:
    sample_id: str
    prompt: str
    seed: int
    # A regex the answer must match, enforced by the engine (vLLM structured outputs) while it
    # decodes, so no answer has to be thrown away for its format.
    regex: str | None = None


@dataclass(frozen=True)
class Completion:
    sample_id: str
    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    error: str | None = None
