import json

import pyarrow as pa
import pyarrow.parquet as pq

from cosmoforge.core.layout import release_file_name
from cosmoforge.reports.card import build_card
from cosmoforge.stages.release import (
    FLAG_COLUMNS,
    PROVENANCE_COLUMNS,
    RELEASE_COLUMNS,
    release_shard,
)
from tests.helpers import LONG, generated_rows


def test_release_shard_counts_what_it_leaves_out(tmp_path):
    shard = tmp_path / "a.parquet"
    pq.write_table(
        generated_rows(
            [LONG, "Too short.", "", LONG, LONG],
            finish={4: "length"},
            errors={2: "prompt too long"},
        ),
        shard,
    )
    out, stats_path = tmp_path / "train-00000-of-00001.parquet", tmp_path / "s.json"
    stats = release_shard(
        "wikihow", shard, out, stats_path, min_token_length=20, drop_truncated=True
    )
    assert stats["generated"] == 5 and stats["kept"] == 2
    assert stats["left_out"] == {"engine_error": 1, "too_short": 1, "truncated": 1}
    assert stats["bos_counted"] is False and stats["split"] == "wikihow"
    kept = pq.read_table(out)
    assert kept.column_names == RELEASE_COLUMNS + PROVENANCE_COLUMNS + FLAG_COLUMNS
    assert kept.column("sample_id").to_pylist() == ["id0", "id3"]
    lengths = kept.column("token_length").to_pylist()
    assert all(n >= 20 for n in lengths) and stats["tokens"] == sum(lengths)
    assert stats["token_length_counts"] == {str(n): lengths.count(n) for n in set(lengths)}
    assert stats["distributions"]["format"] == {"wikihow": 2}
    assert json.loads(stats_path.read_text()) == stats


def test_release_in_small_batches_equals_one_batch(tmp_path, monkeypatch):
    from cosmoforge.stages import release

    shard = tmp_path / "a.parquet"
    texts = [LONG * (1 + i % 3) if i % 4 else "short" for i in range(23)]
    pq.write_table(generated_rows(texts, finish={5: "length"}), shard)
    outputs = []
    for batch_rows in (1000, 3):
        monkeypatch.setattr(release, "BATCH_ROWS", batch_rows)
        out, stats = tmp_path / f"{batch_rows}.parquet", tmp_path / f"{batch_rows}.json"
        figures = release.release_shard("wikihow", shard, out, stats, min_token_length=20)
        outputs.append((pq.read_table(out), {k: v for k, v in figures.items() if k != "file"}))
    assert outputs[0][0].equals(outputs[1][0]) and outputs[0][1] == outputs[1][1]


def test_release_files_of_a_split_load_as_one_dataset(tmp_path):
    import datasets

    folder = tmp_path / "release" / "wikihow"
    total = 0
    for shard, texts in enumerate([[LONG, LONG], [], [LONG, LONG + " More.", LONG]]):
        table = generated_rows(texts)
        table = table.set_column(
            0, "sample_id", pa.array([f"s{shard}-{i}" for i in range(len(texts))], pa.string())
        )
        path = tmp_path / f"{shard}.parquet"
        pq.write_table(table, path)
        release_shard(
            "wikihow", path, folder / release_file_name(shard, 3), tmp_path / f"{shard}.json", 5
        )
        total += len(texts)
    assert sorted(p.name for p in folder.iterdir()) == [
        "train-00000-of-00003.parquet",
        "train-00001-of-00003.parquet",
        "train-00002-of-00003.parquet",
    ]
    loaded = datasets.load_dataset("parquet", data_dir=str(folder))
    assert loaded["train"].num_rows == total == 5
    assert loaded["train"].column_names[:6] == RELEASE_COLUMNS


def test_token_length_excludes_bos():
    from cosmoforge.core.tokens import count_tokens

    # "Hello" is one SentencePiece token (22557) in the Mistral vocabulary; BOS would make it 2.
    assert count_tokens(["Hello"]) == [1]
    assert count_tokens([]) == []


# The run settings the card reads (Layout.card_settings' shape), for the card tests.
CARD_SETTINGS = {
    "run_name": "t",
    "model": {"name": "m", "path": "p"},
    "engine": {"dtype": "auto"},
    "sampling": {"wikihow": {"temperature": 0.6}},
}


def test_card_is_built_from_shard_statistics(tmp_path):
    release_dir = tmp_path / "release"
    stats_files = []
    for shard, texts in enumerate([[LONG, LONG + " More."], [LONG]]):
        path = tmp_path / f"g{shard}.parquet"
        table = generated_rows(texts)
        table = table.set_column(
            0, "sample_id", pa.array([f"s{shard}-{i}" for i in range(len(texts))], pa.string())
        )
        pq.write_table(table, path)
        stats = tmp_path / f"{shard}.json"
        release_shard(
            "wikihow", path, release_dir / "wikihow" / release_file_name(shard, 2), stats, 5
        )
        stats_files.append(stats)

    seeds_report = tmp_path / "seeds.json"
    seeds_report.write_text(
        json.dumps(
            {"split": "wikihow", "seeds": 2, "sources": [{"rows_read": 3, "rows_skipped": 1}]}
        )
    )
    gen_stats = tmp_path / "gen.json"
    gen_stats.write_text(
        json.dumps(
            {"completion_tokens": 100, "generate_s": 2.0, "engine_start_s": 1.0, "resumed_rows": 0}
        )
    )
    settings = CARD_SETTINGS
    readme = release_dir / "README.md"
    stats = build_card(
        stats_files, [seeds_report], [gen_stats], settings, readme, release_dir / "stats.json"
    )
    card = readme.read_text()
    assert card.startswith("---\npretty_name:")
    assert "config_name: wikihow" in card and "path: wikihow/*.parquet" in card
    assert "| wikihow | 2 | 3 |" in card  # files, rows
    assert "**without** BOS" in card
    assert "revision `rev`" in card
    for plot in ("format", "audience", "seed_data", "token_length"):
        png = release_dir / "plots" / f"{plot}.png"
        assert png.read_bytes()[:4] == b"\x89PNG"
        assert f"plots/{plot}.png" in card
    assert stats["rows"] == 3 and stats["seed_rows_skipped"] == {"wikihow": 1}
    assert stats["splits"]["wikihow"]["files"] == 2
    # LONG repeats one sentence: every text is flagged as a loop, counted per template.
    assert stats["quality"]["wikihow/wikihow_article"]["rows"] == 3
    assert stats["quality"]["wikihow/wikihow_article"]["repetition"] == 3
    assert "## Quality flags" in card
    assert "| wikihow/wikihow_article | 3 | 0.0% | 100.0% | 0.0% | 0.0% | 0.0% |" in card
    assert "GPU-hours held by the generation jobs" in card
    assert "## Diversity" in card and stats["diversity"]["wikihow/wikihow_article"]["texts"] == 3
    released = sum(pq.read_table(p).num_rows for p in (release_dir / "wikihow").iterdir())
    assert stats["tokens"] == sum(json.loads(f.read_text())["tokens"] for f in stats_files)
    assert released == stats["rows"]
    assert stats["generation"]["completion_tokens_per_s"] == 50.0
    # Without their reports, dedup and decontamination say so; no topics section.
    assert card.count("Not part of this run.") == 2 and "## Topics" not in card


def test_the_card_renders_every_section_from_the_stage_reports(tmp_path):
    """Ledger fates, dedup, decontamination and topics, beside the sections of the test above:
    each section's figures reach the card, and stats.json holds the same figures."""
    shard = tmp_path / "g.parquet"
    pq.write_table(generated_rows([LONG, LONG + " Other words here.", "Too short."]), shard)
    stats_file = tmp_path / "0.json"
    release_dir = tmp_path / "release"
    release_shard(
        "wikihow", shard, release_dir / "wikihow" / release_file_name(0, 1), stats_file, 5
    )
    reports = tmp_path / "reports"
    reports.mkdir()

    def write(name, data):
        (reports / name).write_text(json.dumps(data))
        return reports / name

    seeds = write(
        "seeds.json",
        {"split": "wikihow", "seeds": 3, "sources": [{"rows_read": 3, "rows_skipped": 0}]},
    )
    gen = write(
        "gen.json",
        {
            "completion_tokens": 90,
            "generate_s": 3.0,
            "engine_start_s": 1.0,
            "resumed_rows": 1,
            "engine_restarts": 1,
            "engine_lost_s": 42.0,
            "gpu_hours": 0.002,
            "prefix_cache_queries": 400,
            "prefix_cache_hits": 100,
        },
    )
    dedup = write(
        "dedup.json",
        {
            "parameters": {
                "n_grams": 5,
                "num_buckets": 14,
                "hashes_per_bucket": 8,
                "seed": 1,
                "hash_precision": 64,
                "hash_fc": "xxhash",
            },
            "removed": 1,
            "documents": 4,
            "per_split": {"wikihow": {"documents": 4, "removed": 1, "rate": 0.25}},
        },
    )
    contamination = write(
        "contamination.json",
        {
            "parameters": {"ngram": 10, "threshold": 0.5},
            "contaminated": 2,
            "table": {"wikihow": {"mmlu": [2, 1], "piqa": [0, 0]}},
        },
    )
    benchmarks = write(
        "benchmarks.json",
        {"mmlu": {"items": 7, "texts": 7, "rows_skipped": 0, "fields": "question"}},
    )
    topics = write(
        "report.json",
        {
            "fit": {"k": 2, "sample_size": 20, "seed": 1, "nredo": 3},
            "embedding_model": "minilm",
            "min_score": 3,
            "kept_clusters": 1,
            "label_errors": 0,
            "clusters": [
                {
                    "id": 0,
                    "size": 12,
                    "topic": "Cell biology",
                    "score": 8,
                    "decision": "keep",
                    "route": "textbook",
                    "reason": "score 8",
                    "examples": "mitosis | meiosis",
                },
                {
                    "id": 1,
                    "size": 8,
                    "topic": None,
                    "score": None,
                    "decision": "drop",
                    "route": None,
                    "reason": "no label",
                    "examples": "buy now",
                },
            ],
            "seeds_per_split": {"web_samples_v1": {"kept": 12, "dropped": 8}},
        },
    )
    for plot in ("topic_map", "topic_distribution", "score_histogram"):
        (reports / f"{plot}.png").write_bytes(b"\x89PNG plot")
    ledger = tmp_path / "ledger.parquet"
    pq.write_table(
        pa.table(
            {
                "split": ["wikihow"] * 4,
                "fate": ["released", "released", "dropped:too_short", "dedup"],
            }
        ),
        ledger,
    )
    settings = CARD_SETTINGS
    stats = build_card(
        [stats_file],
        [seeds],
        [gen],
        settings,
        release_dir / "README.md",
        release_dir / "stats.json",
        dedup_report=dedup,
        contamination=contamination,
        benchmarks=benchmarks,
        topics_report=topics,
        ledger=ledger,
    )
    card = (release_dir / "README.md").read_text()
    # Every section, in order.
    headings = [line for line in card.splitlines() if line.startswith("## ")]
    assert headings == [
        "## Rows and tokens per split",
        "## What became of every prompt",
        "## Quality flags",
        "## Diversity",
        "## seed_data",
        "## format",
        "## audience",
        "## Seeds",
        "## Model and sampling",
        "## Generation",
        "## Columns",
        "## Topics of the web seeds",
        "## Deduplication",
        "## Decontamination",
    ]
    assert "| wikihow | 1 | 2 |" in card  # files, rows (the short text is left out)
    assert "| split | prompts | dedup | dropped:too_short | released |" in card
    assert "| wikihow | 4 | 1 | 1 | 2 |" in card
    assert "prefix cache served 25.0% of the prompt tokens (100 of 400)" in card
    assert (
        "1 rows resumed from checkpoints, 1 engine restart(s) inside a job after the engine died "
        "or froze (42.0 s lost); 0.002 GPU-hours" in card
    )
    assert "(LSH threshold about 0.72)" in card and "| wikihow | 4 | 1 | 25.00% |" in card
    assert "| group | mmlu | piqa |" in card and "| wikihow | 2 (1) | 0 (0) |" in card
    assert "| mmlu | 7 | 7 | 0 | question |" in card
    assert "1 of 2 clusters kept" in card and "web_samples_v1: 12 kept, 8 dropped" in card
    assert "| 0 | 12 | Cell biology | 8 | keep | textbook | score 8 | mitosis / meiosis |" in card
    assert "| 1 | 8 | (no label) |  | drop |  | no label | buy now |" in card
    for plot in ("topic_map", "topic_distribution", "score_histogram"):
        assert (release_dir / "plots" / f"{plot}.png").read_bytes() == b"\x89PNG plot"
        assert f"(plots/{plot}.png)" in card
    assert "Not part of this run" not in card
    assert stats["dedup"] == {"removed": 1, "documents": 4} and stats["contaminated"] == 2
    assert stats["topics"]["clusters"] == 2 and stats["fates"]["wikihow"]["released"] == 2
    assert stats["generation"]["prefix_cache_hit_rate"] == 0.25
