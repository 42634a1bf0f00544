import json

import pyarrow as pa
import pyarrow.parquet as pq

from cosmoforge.card import build_card
from cosmoforge.generate import GENERATION_SCHEMA
from cosmoforge.release import RELEASE_COLUMNS, collect_split, release_split


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


def test_collect_counts_what_it_leaves_out(tmp_path):
    shard_a, shard_b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    pq.write_table(generated_rows([LONG, "Too short.", ""], errors={2: "prompt too long"}), shard_a)
    table_b = generated_rows([LONG, LONG], finish={1: "length"})
    table_b = table_b.set_column(0, "sample_id", pa.array(["x0", "x1"]))
    pq.write_table(table_b, shard_b)
    out, report_path = tmp_path / "c.parquet", tmp_path / "c.json"
    report = collect_split(
        "wikihow", [shard_a, shard_b], out, report_path, min_token_length=20, drop_truncated=True
    )
    assert report["generated"] == 5 and report["kept"] == 2
    assert report["left_out"] == {"engine_error": 1, "too_short": 1, "truncated": 1}
    assert report["bos_counted"] is False
    kept = pq.read_table(out)
    assert kept.column("sample_id").to_pylist() == ["id0", "x0"]
    lengths = kept.column("token_length").to_pylist()
    assert all(n >= 20 for n in lengths) and report["tokens"] == sum(lengths)
    assert json.loads(report_path.read_text()) == report


def test_token_length_excludes_bos():
    from cosmoforge.tokens import count_tokens

    # "Hello" is one SentencePiece token (22557) in the Mistral vocabulary; BOS would make it 2.
    assert count_tokens(["Hello"]) == [1]
    assert count_tokens([]) == []


def test_release_columns_and_card(tmp_path):
    shard = tmp_path / "g.parquet"
    pq.write_table(generated_rows([LONG, LONG + " More."]), shard)
    collected, freport = tmp_path / "c.parquet", tmp_path / "c.json"
    collect_split("wikihow", [shard], collected, freport, min_token_length=5)
    release = tmp_path / "release" / "wikihow" / "train-00000-of-00001.parquet"
    assert release_split(collected, release) == 2
    table = pq.read_table(release)
    assert table.column_names[:6] == RELEASE_COLUMNS
    assert "sample_id" in table.column_names and "model_revision" in table.column_names

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
    readme = tmp_path / "release" / "README.md"
    stats = build_card(
        {"wikihow": release},
        [freport],
        [seeds_report],
        [gen_stats],
        settings,
        readme,
        tmp_path / "release" / "stats.json",
    )
    card = readme.read_text()
    assert card.startswith("---\npretty_name:")
    assert "config_name: wikihow" in card and "path: wikihow/*.parquet" in card
    assert "| wikihow | 2 |" in card
    assert "**without** BOS" in card
    assert "revision `rev`" in card
    for plot in ("format", "audience", "seed_data", "token_length"):
        png = tmp_path / "release" / "plots" / f"{plot}.png"
        assert png.read_bytes()[:4] == b"\x89PNG"
        assert f"plots/{plot}.png" in card
    assert stats["rows"] == 2 and stats["seed_rows_skipped"] == {"wikihow": 1}
    assert stats["generation"]["completion_tokens_per_s"] == 50.0
