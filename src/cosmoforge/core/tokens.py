"""`token_length`: Mistral-7B / Mixtral tokens of the generated text, without BOS or EOS.

The SentencePiece model ships inside the `mistral-common` package (data/tokenizer.model.v1,
vocabulary 32,000), so counting works offline. Cosmopedia's script counted BOS too (one more
than the text's length); the dataset card says which convention this release uses.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

TOKENIZER_NAME = "mistral-7b-v0.1 sentencepiece (mistral-common data/tokenizer.model.v1)"


@functools.lru_cache(maxsize=1)
def _processor():
    import sentencepiece

    spec = importlib.util.find_spec("mistral_common")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("mistral-common is not installed; it ships the Mistral tokenizer")
    model = Path(next(iter(spec.submodule_search_locations))) / "data" / "tokenizer.model.v1"
    return sentencepiece.SentencePieceProcessor(model_file=str(model))


def count_tokens(texts: list[str]) -> list[int]:
    """Token counts of each text, BOS and EOS not counted."""
    if not texts:
        return []
    # One thread: a job is given one core (sentencepiece would use all of the node's).
    return [len(ids) for ids in _processor().encode(list(texts), num_threads=1)]
