import os
import random
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from cosmoforge.core.errors import ConfigError
from cosmoforge.stages.quality import FLAGS, QualityFlags, default_quality, duplicate_ngram_fraction
from cosmoforge.stages.release import FLAG_COLUMNS, release_shard
from tests.helpers import generated_rows

PLAIN = (
    "Rivers carve valleys over thousands of years. Water picks up sand and small stones, and "
    "the moving grains scrape the riverbed deeper each season, while floods widen the banks."
)
OTHER = (
    "Glaciers work differently: the ice grinds rock beneath it and leaves broad U-shaped "
    "troughs, long lakes and scattered boulders when it finally melts back."
)
LOOP = "The cat sat on the mat and looked at the door. " * 12


@pytest.fixture
def checker():
    return QualityFlags(default_quality(), min_token_length=20)


@pytest.mark.parametrize(
    "text, finish, tokens, expected",
    [
        (PLAIN, "stop", 40, []),
        (PLAIN, "length", 40, ["truncated"]),
        (LOOP, "stop", 120, ["repetition"]),
        (
            "As an AI language model, I can describe rivers. " + PLAIN,
            "stop",
            60,
            ["refusal_or_meta"],
        ),
        ("Sure! Here is a blog post about rivers. " + PLAIN, "stop", 60, ["refusal_or_meta"]),
        ("I'm sorry, but I cannot write that story. " + PLAIN, "stop", 60, ["refusal_or_meta"]),
        ("Once upon a time, a river ran. " + PLAIN, "stop", 60, ["boilerplate_opening"]),
        (
            "In today's fast-paced world, rivers matter. " + PLAIN,
            "stop",
            60,
            ["boilerplate_opening"],
        ),
        ("**Title:** Rivers\n\n" + PLAIN, "stop", 60, ["boilerplate_opening"]),
        ("Rivers are short.", "stop", 5, ["too_short"]),
        # Negatives: the same words away from the opening, or not as a stock phrase.
        (PLAIN + " Once upon a time the valley was a plain.", "stop", 60, []),
        ("The engineer said: here is the plan. " + PLAIN, "stop", 60, []),
        ("Welcoming rivers into city parks changes how " + PLAIN, "stop", 60, []),
    ],
)
def test_each_flag_on_crafted_texts(checker, text, finish, tokens, expected):
    assert checker.of(text, finish, tokens) == expected


def test_duplicate_ngram_fraction():
    assert duplicate_ngram_fraction(PLAIN, 4) == 0
    assert duplicate_ngram_fraction(LOOP, 4) > 0.8
    assert duplicate_ngram_fraction("too few words here", 4) == 0


def test_drop_says_which_flags_leave_a_row_out(tmp_path):
    shard = tmp_path / "g.parquet"
    texts = [PLAIN + " " + OTHER, LOOP, "Once upon a time. " + PLAIN + " " + OTHER, "Short."]
    pq.write_table(generated_rows(texts), shard)
    quality = {**default_quality(), "drop": ["too_short", "repetition"]}
    out = tmp_path / "train-00000-of-00001.parquet"
    stats = release_shard("wikihow", shard, out, tmp_path / "s.json", 10, quality=quality)
    assert stats["left_out"] == {"repetition": 1, "too_short": 1}
    assert stats["flags"] == {
        "truncated": 0,
        "repetition": 1,
        "refusal_or_meta": 0,
        "boilerplate_opening": 1,
        "too_short": 1,
    }
    by_template = stats["flags_by_template"]["wikihow/wikihow_article"]
    assert by_template["rows"] == 4 and by_template["boilerplate_opening"] == 1
    table = pq.read_table(out)
    assert table.column("sample_id").to_pylist() == ["id0", "id2"]  # kept: flagged, not dropped
    assert table.column("flag_boilerplate_opening").to_pylist() == [False, True]
    assert set(FLAG_COLUMNS) <= set(table.column_names) and len(FLAG_COLUMNS) == len(FLAGS)


def test_bad_pattern_files_are_named(tmp_path):
    bad = tmp_path / "q.yaml"
    bad.write_text("refusal_or_meta: ['(unclosed']\nboilerplate_opening: []\n")
    with pytest.raises(ConfigError, match=r"q.yaml: refusal_or_meta\[0\]: not a valid regex"):
        QualityFlags({**default_quality(), "patterns": str(bad)}, 10)
    bad.write_text("refusal_or_meta: [x]\n")
    with pytest.raises(ConfigError, match="field 'boilerplate_opening' must be a list"):
        QualityFlags({**default_quality(), "patterns": str(bad)}, 10)


def test_diversity_figures_on_known_openings():
    from cosmoforge.stages.quality import Diversity, distinct_n, merge_diversity

    shards = []
    for shard in range(2):
        d = Diversity()
        # 6 of 10 texts open with "Once upon a time"; the other 4 openings are all different.
        for i in range(10):
            opener = "Once upon a time," if i < 6 else f"Story {shard} {i} begins"
            d.add("stories/a", f"{opener} the fox number {i} ran off to town.")
        shards.append(d.stats())
    merged = merge_diversity(shards)["stories/a"]
    assert merged["texts"] == 20
    assert merged["top_openings_3"][0] == "once upon a"
    # top 5 openings of 3 words: "once upon a" (12) and four others with one text each.
    assert merged["top5_share_3"] == round((12 + 4) / 20, 4)
    assert distinct_n(["a b c a b c"], 2) == round(3 / 5, 4)
    assert distinct_n(["a b c d"], 3) == 1.0
    assert 0 < merged["distinct_2"] < 1 and merged["distinct_3"] <= 1


def test_variants_of_one_seed_are_compared_pairwise():
    from cosmoforge.stages.quality import Diversity

    d = Diversity()
    same = "one two three four five six seven eight"
    for seed, text in [
        ("a", same),
        ("a", same),
        ("a", "nine ten eleven twelve thirteen fourteen"),
        ("b", same),
    ]:
        d.add_variant(seed, text)
    figures = d.variant_similarity()
    # seed a: 3 pairs (identical: 1.0; the others 0.0); seed b alone: no pair.
    assert figures == {"pairs": 3, "mean_jaccard": round(1 / 3, 4), "pairs_above_0_5": 1}


def _tuple_grams(text, n):
    words = text.lower().split()
    return [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]


def _odd_texts():
    rng = random.Random(7)
    vocab = ["Fox", "fox", "ran", "über", "naïve", "東京", "a", "b", "ab", "c", "—", "x\u0301"]
    spaces = [" ", "  ", "\n", "\t", "\r\n", " \x0b "]
    texts = ["", "one", "a b", "ab c", "a bc", "  lead and trail  ", "loop " * 40]
    for _ in range(300):
        words = rng.choices(vocab, k=rng.randint(0, 120))
        if rng.random() < 0.3:  # a loop
            words = words[:8] * 10
        texts.append("".join(w + rng.choice(spaces) for w in words))
    return texts


def test_text_keys_match_word_tuples():
    """The numpy n-gram keys give exactly the word-tuple figures they replaced."""
    from collections import Counter

    from cosmoforge.stages.quality import TextKeys, repeated_share, unique_sorted

    texts = _odd_texts()
    for text in texts:
        for n in (1, 4, 5):
            keys = TextKeys(text).ngrams(n).tolist()
            grams = _tuple_grams(text, n)
            assert len(keys) == len(grams)
            # Equal keys exactly where the word tuples are equal.
            assert len(set(zip(keys, grams, strict=True))) == len(set(grams)) == len(set(keys))
            counts = Counter(grams)
            expected = (
                0.0 if len(grams) < 2 * n else sum(c for c in counts.values() if c > 1) / len(grams)
            )
            assert repeated_share(TextKeys(text).ngrams(n), n) == pytest.approx(expected)
    for a, b in zip(texts, texts[1:], strict=False):
        ka, kb = (unique_sorted(TextKeys(t).ngrams(5)) for t in (a, b))
        sa, sb = set(_tuple_grams(a, 5)), set(_tuple_grams(b, 5))
        assert len(ka) == len(sa) and len(set(ka.tolist()) & set(kb.tolist())) == len(sa & sb)
    # Keys depend on the text alone, not on the process (string hashing is randomized per
    # process; these keys must not be).
    code = (
        "from cosmoforge.stages.quality import TextKeys; print(TextKeys('a b c d e f').ngrams(4))"
    )
    runs = {
        subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in ("1", "2")
    }
    assert runs == {str(TextKeys("a b c d e f").ngrams(4)) + "\n"}
