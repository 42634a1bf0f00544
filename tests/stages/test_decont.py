import difflib
import json
import subprocess
import sys

import pytest

from cosmoforge.stages.decont import (
    BENCHMARKS,
    BenchmarkError,
    BenchmarkIndex,
    BenchmarkItem,
    build_index,
    load_benchmark,
    match_ratio,
    normalize_tokens,
    reference_contaminated,
)

FILLER = (
    "Gardening teaches patience because seeds take weeks to sprout and every season brings new "
    "lessons about soil water and light that no book can fully explain to a beginner. "
)


def bundled_sources(repo):
    return {
        name: {"path": str(repo / "resources" / "benchmarks" / f"{name}.jsonl")}
        for name in BENCHMARKS
    }


@pytest.fixture(scope="module")
def index(repo):
    built, report = build_index(bundled_sources(repo), n=10)
    assert set(report) == set(BENCHMARKS) and all(r["items"] > 0 for r in report.values())
    return built


def edit_words(text, every=12):
    words = text.split()
    return " ".join("indeed" if i % every == every - 1 else w for i, w in enumerate(words))


def test_planted_verbatim_and_lightly_edited_items_are_caught(index):
    for item in index.items:
        verbatim = FILLER * 3 + item.text + " " + FILLER
        hits = index.check(verbatim)
        assert item.item_id in {h["item_id"] for h in hits}, item.item_id
        edited = FILLER + edit_words(item.text) + " " + FILLER * 2
        assert item.item_id in {h["item_id"] for h in index.check(edited)}, item.item_id


def test_clean_documents_and_partial_overlaps_are_kept(index):
    assert index.check(FILLER * 5) == []
    item = max(index.items, key=lambda i: len(i.text))  # the BoolQ passage
    words = item.text.split()
    # Shares a 10-gram (a candidate) but covers well under half of the item: kept.
    partial = FILLER + " ".join(words[:12]) + " " + FILLER * 2
    assert index.candidates(partial)
    assert index.check(partial) == []


def test_every_owner_of_an_ngram_is_checked():
    shared = "the quick brown fox jumps over the lazy dog near the river bank today"
    items = [
        BenchmarkItem("piqa", "piqa:1", shared + " and then it rains heavily over the hills"),
        BenchmarkItem("boolq", "boolq:1", shared),
    ]
    index = BenchmarkIndex(items, n=10)
    found = {h["item_id"] for h in index.check(FILLER + shared + " " + FILLER)}
    # The original rule keeps one owner per n-gram and would check only one of these; the
    # shared words cover all of boolq:1 and about 60% of piqa:1, so both count.
    assert found == {"boolq:1", "piqa:1"}
    assert len(index.candidates(shared)) == 2
    assert reference_contaminated([FILLER + shared], items) == [True]


def test_cydifflib_ratios_equal_difflib(index):
    doc = " ".join(normalize_tokens(FILLER + edit_words(index.items[0].text, 5)))
    item = index.item_norm[0]
    reference = difflib.SequenceMatcher(None, doc, item, autojunk=False)
    blocks = [doc[b.a : b.a + b.size] for b in reference.get_matching_blocks() if b.size > 5]
    assert match_ratio(doc, item) == len(" ".join("".join(blocks).split())) / len(item)


def test_fast_rule_removes_a_superset_of_the_reference_rule(index):
    texts = [FILLER * 2 + item.text for item in index.items] + [FILLER * 4]
    reference = reference_contaminated(texts, index.items)
    fast = [bool(index.check(t)) for t in texts]
    assert all(f or not r for f, r in zip(fast, reference, strict=True))
    assert fast[:-1] == [True] * len(index.items) and fast[-1] is False


def test_results_do_not_depend_on_pythonhashseed(repo, tmp_path):
    script = (
        "import json, sys; sys.path.insert(0, 'src');"
        "from cosmoforge.stages.decont import build_index;"
        f"sources = {json.dumps(bundled_sources(repo))};"
        "index, _ = build_index(sources, 10);"
        "texts = ['x ' * 5 + i.text + ' tail words here' for i in index.items];"
        "print(json.dumps([index.check(t) for t in texts]) + index.hashes.tobytes().hex()[:64])"
    )
    outs = [
        subprocess.run(
            [sys.executable, "-c", script],
            cwd=repo,
            capture_output=True,
            text=True,
            env={"PYTHONHASHSEED": seed, "PATH": "/usr/bin"},
            check=True,
        ).stdout
        for seed in ("1", "4242")
    ]
    assert outs[0] == outs[1] and '"item_id"' in outs[0]


def test_index_round_trips_through_a_file(index, tmp_path):
    path = tmp_path / "index.npz"
    index.save(path)
    loaded = BenchmarkIndex.load(path)
    text = FILLER + index.items[3].text
    assert loaded.check(text) == index.check(text)


@pytest.mark.parametrize(
    "content, message",
    [
        ('{"question": "q?"}\n', "row 1: field 'choices' is missing"),
        ('{"question": "q?", "choices": 3}\n', "row 1: choices must be a list"),
        ("not json\n", "row 1: not valid UTF-8 JSON"),
    ],
)
def test_bad_benchmark_files_name_file_row_and_field(tmp_path, content, message):
    path = tmp_path / "mmlu.jsonl"
    path.write_text(content)
    with pytest.raises(BenchmarkError, match=message):
        load_benchmark("mmlu", {"path": str(path)})


def test_missing_benchmark_file_and_empty_rows(tmp_path):
    with pytest.raises(BenchmarkError, match="nope.jsonl: benchmark file not found"):
        load_benchmark("boolq", {"path": str(tmp_path / "nope.jsonl")})
    path = tmp_path / "boolq.jsonl"
    path.write_text('{"question": "", "passage": "  "}\n{"question": "is it", "passage": "yes"}\n')
    items, skipped = load_benchmark("boolq", {"path": str(path)})
    assert skipped == 1 and len(items) == 1


def test_decontaminate_shard_as_a_datatrove_step_and_the_report(index, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from cosmoforge.core.tables import GENERATION_SCHEMA
    from cosmoforge.stages.decont import contamination_report, decontaminate_shard

    mmlu = next(i for i in index.items if i.benchmark == "mmlu")
    boolq = next(i for i in index.items if i.benchmark == "boolq")
    texts = {
        "clean1": FILLER * 3,
        "dirty1": FILLER + mmlu.text,  # verbatim
        "dirty2": FILLER + edit_words(boolq.text) + FILLER,  # lightly edited
        "clean2": FILLER * 2,
    }
    rows = []
    for sample_id, text in texts.items():
        row = dict.fromkeys(GENERATION_SCHEMA.names)
        row.update(sample_id=sample_id, split="stories", shard=0, text=text)
        rows.append(row)
    shard = tmp_path / "00000.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=GENERATION_SCHEMA), shard)
    index_path = tmp_path / "index.npz"
    index.save(index_path)
    clean, dirty = tmp_path / "clean.parquet", tmp_path / "dirty.parquet"
    stats = decontaminate_shard(shard, index_path, 0.5, clean, dirty)
    assert stats == {"documents": 4, "contaminated": 2}
    assert pq.read_table(clean).column("sample_id").to_pylist() == ["clean1", "clean2"]
    assert pq.read_table(dirty).column("sample_id").to_pylist() == ["dirty1", "dirty2"]
    report = contamination_report(
        [dirty],
        {"stories": ["stories"]},
        sorted(BENCHMARKS),
        {"n": 10},
        tmp_path / "c.csv",
        tmp_path / "c.json",
    )
    assert report["table"]["stories"]["mmlu"] == [1, 1]
    assert report["table"]["stories"]["boolq"] == [1, 1]
    assert report["table"]["stories"]["piqa"] == [0, 0]
    csv = (tmp_path / "c.csv").read_text().splitlines()
    assert csv[0].startswith("group,arc_challenge") and '"1 (1)"' in csv[1]


def test_batched_check_equals_one_by_one(index):
    texts = [FILLER * 2 + item.text for item in index.items] + [FILLER, "", "short text"]
    texts += ["Café naïve résumé " + index.items[2].text]  # accents: the NFD path
    assert index.check_batch(texts) == [index.check(t) for t in texts]


def test_normalization_matches_cosmopedia_tokenize():
    import re
    import unicodedata

    def original(text):
        text = unicodedata.normalize("NFD", text)
        text = "".join(c for c in text if not unicodedata.combining(c))
        return re.findall(r"\w+", text.lower())

    for text in [
        "Crème Brûlée, ÉCOLE — naïve façade!",
        "plain ascii, Words 42",
        "日本語のテキスト",
    ]:
        assert normalize_tokens(text) == original(text)


def test_ngram_hashes_depend_only_on_the_normalized_words():
    from cosmoforge.stages.decont import batch_ngram_hashes

    texts = [
        "The Quick, brown fox -- jumps over the lazy dog; internationalization matters 42 times",
        "Crème Brûlée: ÉCOLE naïve façade, déjà vu, Ünïcödé and Straße in one sentence here",
        "x" * 40 + " " + "y" * 17 + " short words a b c d e f g h i j k",
    ]
    for text in texts:
        normalized = " ".join(normalize_tokens(text))
        assert normalize_tokens(normalized) == normalize_tokens(text)
        got, _ = batch_ngram_hashes([text], 3)
        # Other separators and (for ASCII) case give the same words, so the same hashes.
        variant = normalized.replace(" ", " -- ") + "!"
        again, _ = batch_ngram_hashes([variant.upper() if variant.isascii() else variant], 3)
        assert len(got) == len(normalize_tokens(text)) - 2
        assert got.tolist() == again.tolist()
    # Words differing anywhere (also inside tokens longer than 8 bytes) give other n-grams.
    variants = [
        "one two internationalization",
        "one two internationalizatiom",
        "one two xnternationalization",
        "one two internationalisation",
        "one two three",
        "two one three",
    ]
    hashes = [batch_ngram_hashes([v], 3)[0].tolist() for v in variants]
    assert all(len(h) == 1 for h in hashes) and len({h[0] for h in hashes}) == len(variants)


def test_ngrams_never_span_two_documents_of_a_batch(index):
    words = index.items[0].text.split()
    half = len(words) // 2
    first, second = FILLER + " ".join(words[:half]), " ".join(words[half:]) + FILLER
    separate = index.check_batch([first, second])
    assert separate == [index.check(first), index.check(second)]
    assert index.check(first + " " + second)  # joined, the item is there


def test_an_index_from_another_hash_version_is_refused(index, tmp_path):
    import numpy as np

    path = tmp_path / "old.npz"
    index.save(path)
    data = dict(np.load(path))
    data.pop("hash_version")
    with open(path, "wb") as fh:
        np.savez(fh, **data)
    with pytest.raises(BenchmarkError, match=f"{path}: index built with n-gram hash version 1"):
        BenchmarkIndex.load(path)
