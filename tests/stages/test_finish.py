"""finish-shard: one read of the generation shard, the two filters chained, the release written
straight from what they kept; the same files as the three steps run one by one on files."""

import json
import random

import pyarrow.parquet as pq
import pytest

from cosmoforge.stages import dedup, finish, release
from cosmoforge.stages.decont import BENCHMARKS, build_index, decontaminate_shard
from tests.helpers import DEDUP_PARAMS, LONG, generated_rows

WORDS = sorted({"".join(random.Random(i).choices("abcdefghij", k=6)) for i in range(3000)})


@pytest.fixture(scope="module")
def finished(repo, tmp_path_factory):
    """A shard with a near-duplicate pair, a contaminated row, a short row and an engine error,
    finished both ways, in batches of 7 rows so the release crosses batch boundaries."""
    tmp = tmp_path_factory.mktemp("finish")
    rng = random.Random(3)
    texts = [" ".join(rng.choice(WORDS) for _ in range(120)) for _ in range(30)]
    texts[9] = texts[2].replace(texts[2].split()[50], "changed", 1)  # near-duplicate of row 2
    index, _ = build_index(
        {n: {"path": str(repo / "resources" / "benchmarks" / f"{n}.jsonl")} for n in BENCHMARKS},
        n=10,
    )
    index.save(tmp / "index.npz")
    texts[14] = LONG + index.items[0].text  # a benchmark item, verbatim
    texts[20] = "Too short."
    generated = tmp / "generated.parquet"
    pq.write_table(generated_rows(texts, errors={25: "prompt too long"}), generated)
    dedup.signatures(generated, 0, 1, tmp / "sigs", DEDUP_PARAMS, tmp / "logs")
    for rank in range(DEDUP_PARAMS["num_buckets"]):
        dedup.buckets(tmp / "sigs", rank, tmp / "buckets", DEDUP_PARAMS, tmp / "logs")
    dedup.cluster(tmp / "buckets", tmp / "clusters", DEDUP_PARAMS, tmp / "logs")
    settings = {"min_token_length": 20, "drop_truncated": False, "quality": None}
    patch = pytest.MonkeyPatch()
    patch.setattr(release, "BATCH_ROWS", 7)
    patch.setattr(finish, "BATCH_ROWS", 7)
    chained = tmp / "chained"
    chained.mkdir()
    outputs = {
        "removed": chained / "removed.parquet",
        "stayed": chained / "stayed.json",
        "contaminated": chained / "contaminated.parquet",
        "release": chained / "train-00000-of-00001.parquet",
        "stats": chained / "stats.json",
        "left_out": chained / "left_out.parquet",
    }
    stats = finish.finish_shard(
        "wikihow",
        generated,
        rank=0,
        clusters_dir=tmp / "clusters",
        index=tmp / "index.npz",
        threshold=0.5,
        outputs=outputs,
        **settings,
    )
    steps = tmp / "steps"
    steps.mkdir()
    dedup.filter_shard(
        generated,
        0,
        tmp / "clusters",
        steps / "deduped.parquet",
        steps / "removed.parquet",
        steps / "stayed.json",
    )
    decontaminate_shard(
        steps / "deduped.parquet",
        tmp / "index.npz",
        0.5,
        steps / "clean.parquet",
        steps / "contaminated.parquet",
    )
    release.release_shard(
        "wikihow",
        steps / "clean.parquet",
        steps / "train-00000-of-00001.parquet",
        steps / "stats.json",
        left_out_path=steps / "left_out.parquet",
        **settings,
    )
    patch.undo()
    return stats, outputs, steps


def ids(path):
    return pq.read_table(path).column("sample_id").to_pylist()


def test_each_row_lands_in_exactly_one_place(finished):
    stats, outputs, _ = finished
    assert ids(outputs["removed"]) == ["id9"]
    assert ids(outputs["contaminated"]) == ["id14"]
    assert pq.read_table(outputs["left_out"]).to_pylist() == [
        {"sample_id": "id20", "reason": "too_short"},
        {"sample_id": "id25", "reason": "engine_error"},
    ]
    gone = {"id9", "id14", "id20", "id25"}
    assert ids(outputs["release"]) == [f"id{i}" for i in range(30) if f"id{i}" not in gone]
    assert json.loads(outputs["stayed"].read_text()) == {"0": "id2"}  # the one cluster
    assert (stats["generated"], stats["kept"]) == (28, 26)
    assert (stats["dedup_removed"], stats["contaminated"]) == (1, 1)
    assert set(stats["stage_seconds"]) == {"read_and_filter", "side_files", "release"}


def test_it_writes_only_its_outputs_and_no_filtered_copy(finished):
    _, outputs, _ = finished
    folder = outputs["release"].parent
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in outputs.values())


def test_the_chained_job_writes_what_the_three_steps_write_one_by_one(finished):
    stats, outputs, steps = finished
    assert outputs["release"].read_bytes() == (steps / "train-00000-of-00001.parquet").read_bytes()
    for name in ("removed", "contaminated", "left_out"):
        assert pq.read_table(outputs[name]).equals(pq.read_table(steps / f"{name}.parquet")), name
    assert outputs["stayed"].read_text() == (steps / "stayed.json").read_text()
    one_by_one = json.loads((steps / "stats.json").read_text())
    chained = json.loads(outputs["stats"].read_text())
    for key in ("dedup_removed", "contaminated", "stage_seconds"):
        chained.pop(key)
    assert chained == one_by_one
