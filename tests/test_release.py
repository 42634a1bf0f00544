import json

import pyarrow as pa
import pyarrow.parquet as pq

from cosmoforge.card import build_card
from cosmoforge.generate import GENERATION_SCHEMA
from cosmoforge.layout import release_file_name
from cosmoforge.release import FLAG_COLUMNS, PROVENANCE_COLUMNS, RELEASE_COLUMNS, release_shard


def generated_rows(texts, finish=None, errors=None):
    rows = []
    for i, text in enumerate(texts):
        rows.append(
            {
                "sample_id": f"id{i}",
                "split": "wikihow",
                "shard": 0,
                "seed_id": f"wh:{i}",
                "seed_data": "wikihow",
                "format": "wikihow",
                "audience": "general",
                "template_id": "wikihow/wikihow_article",
                "template_version": 1,
                "variant": "",
                "topic": None,
                "topic_injected": False,
                "topic_cluster": None,
                "prompt": f"Title: {i}",
                "text": text,
                "finish_reason": (finish or {}).get(i, "stop"),
                "prompt_tokens": 10,
                "completion_tokens": 50,
                "error": (errors or {}).get(i),
                "model": "m",
                "model_revision": "rev",
                "engine": "vllm",
                "engine_version": "0.32.0",
                "sampling": "{}",
                "request_seed": i,
            }
        )
    return pa.Table.from_pylist(rows, schema=GENERATION_SCHEMA)


LONG = "Step one: gather the materials you need and check them carefully. " * 4


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
    from cosmoforge import release

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
    from cosmoforge.tokens import count_tokens

    # "Hello" is one SentencePiece token (22557) in the Mistral vocabulary; BOS would make it 2.
    assert count_tokens(["Hello"]) == [1]
    assert count_tokens([]) == []


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
    settings = {
        "run_name": "t",
        "model": {"name": "m", "path": "p"},
        "engine": {"dtype": "auto"},
        "sampling": {"wikihow": {"temperature": 0.6}},
    }
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
