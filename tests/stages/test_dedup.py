import random

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cosmoforge.core.tables import GENERATION_SCHEMA
from cosmoforge.stages import dedup, filters
from tests.helpers import DEDUP_PARAMS as PARAMS

# Letters only: datatrove's text normalization rewrites digits.
VOCAB = sorted(
    {"".join(random.Random(i).choices("abcdefghijklmnopqrstuvwxyz", k=7)) for i in range(5000)}
)


def shingles(text, n=5):
    words = text.split()
    return {" ".join(words[i : i + n]) for i in range(len(words) - n + 1)}


def jaccard(a, b):
    sa, sb = shingles(a), shingles(b)
    return len(sa & sb) / len(sa | sb)


def edited(text, rate, rng):
    words = text.split()
    for i in rng.sample(range(len(words)), round(rate * len(words))):
        words[i] = rng.choice(VOCAB)
    return " ".join(words)


def shard(path, split, texts, prefix):
    rows = []
    for i, text in enumerate(texts):
        row = dict.fromkeys(GENERATION_SCHEMA.names)
        row.update(sample_id=f"{prefix}{i}", split=split, shard=0, text=text)
        rows.append(row)
    pq.write_table(pa.Table.from_pylist(rows, schema=GENERATION_SCHEMA), path)


@pytest.fixture(scope="module")
def dedup_run(tmp_path_factory):
    rng = random.Random(7)
    tmp = tmp_path_factory.mktemp("dedup")
    base_near = " ".join(rng.choice(VOCAB) for _ in range(400))
    base_far = " ".join(rng.choice(VOCAB) for _ in range(400))
    near, far = edited(base_near, 0.01, rng), edited(base_far, 0.08, rng)
    pairs = {"near": (base_near, near), "far": (base_far, far)}
    others = [" ".join(rng.choice(VOCAB) for _ in range(300)) for _ in range(6)]
    shards = [tmp / "a.parquet", tmp / "b.parquet"]
    # The copies sit in another split and shard than their originals: dedup is across splits.
    # An empty text (an engine-error row) and one shorter than an n-gram have no shingles:
    # they pass through untouched.
    shard(shards[0], "stories", [base_near, base_far, *others[:3], "", "three words only"], "a")
    shard(shards[1], "wikihow", [near, far, *others[3:]], "b")
    for rank, path in enumerate(shards):
        dedup.signatures(path, rank, 2, tmp / "sigs", PARAMS, tmp / "logs" / "sigs")
    for rank in range(PARAMS["num_buckets"]):
        dedup.buckets(tmp / "sigs", rank, tmp / "buckets", PARAMS, tmp / "logs" / "buckets")
    dedup.cluster(tmp / "buckets", tmp / "remove", PARAMS, tmp / "logs" / "cluster")
    outputs = []
    for rank, path in enumerate(shards):
        out = [tmp / f"{name}{rank}" for name in ("kept.parquet", "removed.parquet", "c.json")]
        dedup.filter_shard(path, rank, tmp / "remove", *out)
        outputs.append(out)
    report = dedup.dedup_report(
        [o[1] for o in outputs],
        [o[2] for o in outputs],
        shards,
        PARAMS,
        tmp / "removed.parquet",
        tmp / "report.json",
    )
    return pairs, outputs, report, tmp


def test_near_duplicate_removed_and_distant_pair_kept(dedup_run):
    pairs, outputs, report, tmp = dedup_run
    assert 0.85 < jaccard(*pairs["near"]) < 0.95
    assert 0.4 < jaccard(*pairs["far"]) < 0.6
    kept_b = pq.read_table(outputs[1][0]).column("sample_id").to_pylist()
    removed_b = pq.read_table(outputs[1][1]).column("sample_id").to_pylist()
    assert removed_b == ["b0"] and "b1" in kept_b
    assert pq.read_table(outputs[0][1]).num_rows == 0  # originals stay
    assert pq.read_table(outputs[0][0]).num_rows == 7
    # The removed copy names the document that stayed.
    removed = pq.read_table(tmp / "removed.parquet").to_pylist()
    assert [(r["sample_id"], r["kept_sample_id"]) for r in removed] == [("b0", "a0")]
    assert report["per_split"]["wikihow"] == {"documents": 5, "removed": 1, "rate": 0.2}
    assert report["per_split"]["stories"] == {"documents": 7, "removed": 0, "rate": 0.0}
    assert report["parameters"]["num_buckets"] == 14


def test_rerunning_a_rank_gives_identical_signatures(dedup_run, tmp_path):
    _, _, _, tmp = dedup_run
    dedup.signatures(tmp / "a.parquet", 0, 2, tmp_path / "sigs", PARAMS, tmp_path / "logs")
    for bucket in range(PARAMS["num_buckets"]):
        name = f"bucket_{bucket:03d}/00000.minhash.sig"
        assert (tmp_path / "sigs" / name).read_bytes() == (tmp / "sigs" / name).read_bytes()


def test_signature_shingles_equal_datatrove():
    """The faster text simplification and hashing give datatrove's own shingles."""
    from datatrove.pipeline.dedup.minhash import MinhashDedupSignature
    from datatrove.utils.text import simplify_text

    config = dedup.minhash_config(PARAMS)
    ours = dedup.Signatures("unused", config=config, language=dedup.WhitespaceTokenizer())
    theirs = MinhashDedupSignature("unused", config=config, language=dedup.WhitespaceTokenizer())
    rng = random.Random(3)
    pieces = ["Café", "naïve", "Ångström", "x\u0301y", "東京", "مرحبا", "1,5", "Monday", "—", "!"]
    texts = [" ".join(rng.choices(VOCAB[:50] + pieces, k=rng.randint(0, 60))) for _ in range(200)]
    texts += ["", "   ", "\u0301 leading mark", "plain ascii words only here and there"]
    for text in texts:
        assert dedup.simplified(text, config.norm_config) == simplify_text(text, config.norm_config)
        assert ours.get_shingles(text).tolist() == theirs.get_shingles(text).tolist()


def test_chained_filters_give_the_kept_mask_and_each_filters_verdicts(tmp_path):
    """The helper dedup and decontamination share, on two toy filters in a chain: the second
    sees only what the first kept, and each one's drops are recorded apart, with their
    verdicts."""
    from datatrove.pipeline.filters.base_filter import BaseFilter

    class DropsOdd(BaseFilter):
        name = "drops odd ids"

        def filter(self, doc):
            if int(doc.id[2:]) % 2:
                doc.metadata[filters.VERDICT_KEY] = {"why": f"odd {doc.id}"}
                return False, "odd"
            return True

    class DropsThrees(BaseFilter):
        name = "drops multiples of three"

        def filter(self, doc):
            seen.append(doc.id)
            return int(doc.id[2:]) % 3 != 0

    seen = []
    path = tmp_path / "g.parquet"
    shard(path, "stories", [f"text number {i}" for i in range(8)], "id")
    table = pq.read_table(path)
    kept, (odd, three) = filters.apply_filters(
        table,
        [
            lambda dropped: DropsOdd(exclusion_writer=dropped),
            lambda dropped: DropsThrees(exclusion_writer=dropped),
        ],
        0,
        path,
    )
    ids = table.column("sample_id").to_pylist()
    assert [i for i, k in zip(ids, kept.to_pylist(), strict=True) if k] == ["id2", "id4"]
    assert odd == {f"id{i}": {"why": f"odd id{i}"} for i in (1, 3, 5, 7)}
    assert three == {"id0": None, "id6": None}
    assert seen == ["id0", "id2", "id4", "id6"]


def test_rows_a_filter_neither_kept_nor_dropped_are_an_error(tmp_path):
    """A filter that swallows a document would make the release silently smaller."""
    from datatrove.pipeline.base import PipelineStep

    class Swallows(PipelineStep):
        name = "loses id2"

        def run(self, data, rank=0, world_size=1):
            yield from (doc for doc in data if doc.id != "id2")

    path = tmp_path / "g.parquet"
    shard(path, "stories", [f"text number {i}" for i in range(4)], "id")
    with pytest.raises(RuntimeError, match=r"g.parquet: the filters accounted for 3 of 4 rows"):
        filters.apply_filters(pq.read_table(path), [lambda dropped: Swallows()], 0, path)
