"""Cosmopedia's text normalization, word n-gram hashing (numba kernels over a batch's bytes)
and the difflib match ratio."""

from __future__ import annotations

import re
import sys
import unicodedata

import numba
import numpy as np

try:  # bit-identical to difflib (checked in the tests), about 10x faster
    from cydifflib import SequenceMatcher
except ImportError:  # pragma: no cover - the pinned environment has cydifflib
    from difflib import SequenceMatcher


WORD = re.compile(r"\w+")
MIN_BLOCK_CHARS = 5  # matching blocks of at most this many characters are ignored, as upstream


_COMBINING: dict[int, None] | None = None


def _combining_marks() -> dict[int, None]:
    global _COMBINING
    if _COMBINING is None:
        _COMBINING = {
            cp: None for cp in range(sys.maxunicode + 1) if unicodedata.combining(chr(cp))
        }
    return _COMBINING


def normalize_tokens(text: str) -> list[str]:
    """NFD, combining marks dropped, lowercase, word characters (Cosmopedia's tokenize)."""
    if not text.isascii():  # ASCII text is already NFD and has no combining marks
        text = unicodedata.normalize("NFD", text).translate(_combining_marks())
    return WORD.findall(text.lower())


# Byte classes: word bytes are ASCII [0-9A-Za-z_] and every byte of a multi-byte UTF-8
# character (non-ASCII text is first normalized into lowercase words). ASCII text is not
# lowercased in Python: the kernel reads bytes through _FOLD, which lowercases ASCII letters.
_WORD_BYTE = np.zeros(256, dtype=np.bool_)
_WORD_BYTE[[ord(c) for c in "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_"]] = (
    True
)
_WORD_BYTE[128:] = True
_FOLD = np.arange(256, dtype=np.uint64)
_FOLD[ord("A") : ord("Z") + 1] += 32
# The prefilter: one bit per value of an n-gram hash's top 24 bits, packed (2 MB, so it stays
# in the CPU caches); set for every n-gram of the index.
_BITMAP_BITS = 24
_K1 = np.uint64(0xFF51AFD7ED558CCD)  # odd multipliers (murmur3's)
_K2 = np.uint64(0xC4CEB9FE1A85EC53)
# Bumped whenever the n-gram hash changes: a saved index from another version is refused.
HASH_VERSION = 2


@numba.njit(cache=True, nogil=True)
def _token_hashes(data, offsets, word_byte, fold):  # pragma: no cover - compiled
    """Pass 1: a hash for every token (run of word bytes) and its document.

    A token's bytes are rotated in 8 bits at a time (its exact bytes for tokens of up to 8
    bytes; longer ones wrap around, and a collision only adds a candidate that difflib then
    rejects). No data-dependent branch per byte: a mispredicted branch at every token boundary
    costs more than the hashing, so the state is cleared with a mask on separator bytes and
    every byte stores a candidate that only a token end keeps (k += end)."""
    hashes = np.empty(len(data) // 2 + 2, np.uint64)
    docs = np.empty(len(data) // 2 + 2, np.int64)
    zero = np.uint64(0)
    one = np.uint64(1)
    k = 0
    for doc in range(len(offsets) - 1):
        token = zero
        previous = zero
        # Every document ends in a separator ("\n"), so its last token ends in its range.
        for i in range(offsets[doc], offsets[doc + 1]):
            word = np.uint64(word_byte[data[i]])
            hashes[k] = token
            docs[k] = doc
            k += previous & (word ^ one)  # the token ended at the previous byte
            rotated = (token << np.uint64(8)) | (token >> np.uint64(56))
            token = (rotated ^ fold[data[i]]) & (zero - word)  # cleared on separators
            previous = word
    return hashes[:k], docs[:k]


@numba.njit(cache=True, nogil=True)
def _ngram_hashes(tokens, token_docs, n, bitmap, table, only_indexed):  # pragma: no cover
    """Pass 2: every n-gram's hash, the rolling polynomial of its n token hashes, and its
    document. With `only_indexed`, only the n-grams of the index: the packed bitmap of top
    bits rules out all but a few percent (a well-predicted branch, 2 MB that stay cached), the
    open-addressing table (`_hash_table`) decides the rest exactly."""
    out_hashes = np.empty(len(tokens), np.uint64)
    out_docs = np.empty(len(tokens), np.int64)
    ring = np.zeros(n, np.uint64)
    mult = np.uint64(0x9E3779B97F4A7C15)
    top = np.uint64(1)  # mult ** n: the weight of the token leaving the window
    for _ in range(n):
        top *= mult
    shift = np.uint64(64 - _BITMAP_BITS)
    slots = np.uint64(len(table) - 1)
    found = 0
    count = 0
    slot = 0
    rolling = np.uint64(0)
    current = -1
    for t in range(len(tokens)):
        if token_docs[t] != current:  # a new document: windows never span two
            current = token_docs[t]
            count = 0
            slot = 0
            rolling = np.uint64(0)
        token = tokens[t] * _K1
        rolling = rolling * mult + token
        if count >= n:
            rolling -= ring[slot] * top  # the token leaving the window
        ring[slot] = token
        slot += 1
        if slot == n:
            slot = 0
        count += 1
        if count < n:
            continue
        gram = rolling * _K2  # odd: a bijection whose top bits mix every input bit
        if gram == 0:  # 0 marks an empty slot of the table
            gram = np.uint64(1)
        if only_indexed:
            bit = gram >> shift
            if (bitmap[bit >> np.uint64(3)] >> (bit & np.uint64(7))) & 1 == 0:
                continue
            probe = gram & slots
            while table[probe] != gram and table[probe] != 0:
                probe = (probe + np.uint64(1)) & slots
            if table[probe] == 0:
                continue
        out_hashes[found] = gram
        out_docs[found] = current
        found += 1
    return out_hashes[:found].copy(), out_docs[:found].copy()


@numba.njit(cache=True, nogil=True)
def _hash_table(hashes):  # pragma: no cover - compiled
    """An open-addressing (linear probing) set of non-zero hashes, at most half full."""
    size = 1
    while size < 2 * len(hashes) + 2:
        size *= 2
    table = np.zeros(size, np.uint64)
    slots = np.uint64(size - 1)
    for h in hashes:
        probe = h & slots
        while table[probe] != h and table[probe] != 0:
            probe = (probe + np.uint64(1)) & slots
        table[probe] = h
    return table


def _normalized_batch(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The normalized bytes of a batch, and where each document starts (plus the end)."""
    # ASCII text goes in as it is (the kernel folds case); other text goes through the full
    # normalization. One join and one encode for the whole batch.
    parts = [t if t.isascii() else " ".join(normalize_tokens(t)) for t in texts]
    text = "\n".join(parts) + "\n"
    data = text.encode("utf-8")
    if len(data) == len(text):
        lengths = [len(p) + 1 for p in parts]
    else:  # multi-byte characters: count bytes per document
        lengths = [len(p) + 1 if p.isascii() else len(p.encode("utf-8")) + 1 for p in parts]
    offsets = np.zeros(len(texts) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return np.frombuffer(data, dtype=np.uint8), offsets


_NOTHING = (np.zeros(1, dtype=np.uint8), np.zeros(1, dtype=np.uint64))


def batch_ngram_hashes(
    texts: list[str], n: int, index: tuple[np.ndarray, np.ndarray] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Hashes of every word n-gram of every text (in order), and the text each belongs to; with
    an index's (bitmap, hash table), only the n-grams the index has. Two compiled passes
    (numba): token hashes over the bytes, then rolling n-gram hashes over the tokens. Equal
    n-grams always hash equal; a collision only adds a candidate that difflib then rejects."""
    data, offsets = _normalized_batch(texts)
    tokens, token_docs = _token_hashes(data, offsets, _WORD_BYTE, _FOLD)
    bitmap, table = index or _NOTHING
    return _ngram_hashes(tokens, token_docs, n, bitmap, table, index is not None)


def ngram_hashes(text: str, n: int) -> np.ndarray:
    """64-bit hashes of every word n-gram of a text, sorted and unique."""
    return np.unique(batch_ngram_hashes([text], n)[0])


def match_ratio(document_norm: str, item_norm: str, matcher_class=None) -> float:
    """Cosmopedia's score: characters of the item covered by long matching blocks / its length
    (`matcher_class`: difflib's SequenceMatcher or a drop-in; cydifflib's by default)."""
    if not item_norm:
        return 0.0
    matcher = (matcher_class or SequenceMatcher)(None, document_norm, item_norm, autojunk=False)
    blocks = [
        document_norm[b.a : b.a + b.size]
        for b in matcher.get_matching_blocks()
        if b.size > MIN_BLOCK_CHARS
    ]
    matched = " ".join("".join(blocks).split())
    return len(matched) / len(item_norm)
