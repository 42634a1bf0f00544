import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cosmoforge.errors import SeedError
from cosmoforge.seeds import read_split_seeds


def write_jsonl(path, rows):
    with open(path, "wb") as fh:
        for row in rows:
            fh.write(row if isinstance(row, bytes) else (json.dumps(row) + "\n").encode())


def web_source(path, **extra):
    return {"name": "web", "kind": "web", "format": "jsonl", "path": str(path), **extra}


def test_jsonl_bad_rows_are_skipped_and_counted(tmp_path):
    path = tmp_path / "web.jsonl"
    write_jsonl(
        path,
        [
            {"id": "a", "text": "A good extract about stars.", "topic": "Astronomy"},
            {"id": "b", "text": "   "},  # empty
            {"id": "c"},  # missing field
            {"id": "d", "text": 42},  # wrong type
            b'{"id": "e", "text": "caf\xe9"}\n',  # not UTF-8
            b"{not json}\n",
            b"[1, 2]\n",  # not an object
            {"id": "a", "text": "Same id again."},  # duplicate id
            {"id": 7, "text": "Integer ids are accepted."},
        ],
    )
    table, report = read_split_seeds("web_samples_v2", [web_source(path)])
    assert table.column("seed_id").to_pylist() == ["web:a", "web:7"]
    source = report["sources"][0]
    assert source["rows_read"] == 9 and source["rows_kept"] == 2 and source["rows_skipped"] == 7
    assert source["skipped_by_reason"] == {
        "duplicate_id": 1,
        "empty_field": 1,
        "invalid_json": 1,
        "missing_field": 1,
        "not_an_object": 1,
        "undecodable": 1,
        "wrong_type": 1,
    }
    assert f"{path}: row 2, field 'text': field 'text' is empty" in source["examples"]
    assert (
        f"{path}: row 4, field 'text': field 'text' is int, expected string" in source["examples"]
    )


@pytest.mark.parametrize(
    "row, message",
    [
        ({"id": "x", "body": ""}, "row 2, field 'body': field 'body' is empty"),
        ({"id": "x"}, "row 2, field 'body': field 'body' is missing"),
        ({"id": "x", "body": ["list"]}, "row 2, field 'body': field 'body' is list"),
        (b'{"id": "x", "body": "\xff"}\n', "row 2: not UTF-8"),
    ],
)
def test_error_mode_names_file_row_and_field(tmp_path, row, message):
    path = tmp_path / "web.jsonl"
    write_jsonl(path, [{"id": "ok", "body": "fine"}, row])
    source = web_source(path, fields={"text": "body"})
    with pytest.raises(SeedError) as err:
        read_split_seeds("web_samples_v1", [source], on_bad_row="error")
    assert str(path) in str(err.value)
    assert message in str(err.value)


def test_csv_and_parquet_readers_with_field_mapping(tmp_path):
    csv_path = tmp_path / "titles.csv"
    csv_path.write_bytes(b"name,slug\nHow to Knit,knit\n,empty\nHow to Sail,sail\n")
    table, report = read_split_seeds(
        "wikihow",
        [
            {
                "name": "wh",
                "kind": "wikihow",
                "format": "csv",
                "path": str(csv_path),
                "fields": {"title": "name", "id": "slug"},
            }
        ],
    )
    assert table.column("title").to_pylist() == ["How to Knit", "How to Sail"]
    assert table.column("seed_id").to_pylist() == ["wh:knit", "wh:sail"]
    assert report["sources"][0]["skipped_by_reason"] == {"empty_field": 1}

    pq_path = tmp_path / "amt.parquet"
    pq.write_table(pa.table({"content": ["x = 1", None, "y = 2"], "n": [1, 2, 3]}), pq_path)
    table, report = read_split_seeds(
        "auto_math_text",
        [
            {
                "name": "amt",
                "kind": "auto_math_text",
                "format": "parquet",
                "path": str(pq_path),
                "fields": {"text": "content"},
            }
        ],
    )
    assert table.column("text").to_pylist() == ["x = 1", "y = 2"]
    # Without an id field the seed id is a hash of the content: stable across runs.
    again, _ = read_split_seeds(
        "auto_math_text",
        [
            {
                "name": "amt",
                "kind": "auto_math_text",
                "format": "parquet",
                "path": str(pq_path),
                "fields": {"text": "content"},
            }
        ],
    )
    assert table.column("seed_id").to_pylist() == again.column("seed_id").to_pylist()
    assert report["sources"][0]["skipped_by_reason"] == {"missing_field": 1}


def test_csv_undecodable_field_is_reported(tmp_path):
    path = tmp_path / "t.csv"
    path.write_bytes(b"title\nHow to Bake\nHow to \xff Fly\n")
    with pytest.raises(SeedError, match=r"row 2, field 'title': field 'title' is not valid UTF-8"):
        read_split_seeds(
            "wikihow",
            [{"name": "wh", "kind": "wikihow", "format": "csv", "path": str(path)}],
            on_bad_row="error",
        )


def test_missing_and_corrupt_files_are_named(tmp_path):
    with pytest.raises(SeedError, match="nope.jsonl: seed file not found"):
        read_split_seeds("web_samples_v1", [web_source(tmp_path / "nope.jsonl")])
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(SeedError, match="broken.parquet: not a readable parquet file"):
        read_split_seeds(
            "auto_math_text",
            [{"name": "a", "kind": "auto_math_text", "format": "parquet", "path": str(broken)}],
        )


def test_no_usable_rows_is_an_error(tmp_path):
    path = tmp_path / "web.jsonl"
    write_jsonl(path, [{"id": "a", "text": ""}])
    with pytest.raises(SeedError, match="no usable seed rows"):
        read_split_seeds("web_samples_v1", [web_source(path)])


def test_multiple_sources_and_max_seeds(repo):
    seeds = repo / "resources" / "seeds"
    sources = [
        {
            "name": "ultrachat",
            "kind": "ultrachat",
            "format": "jsonl",
            "path": str(seeds / "ultrachat_questions.jsonl"),
        },
        {
            "name": "openhermes2.5",
            "kind": "openhermes",
            "format": "jsonl",
            "path": str(seeds / "openhermes_pairs.jsonl"),
            "fields": {"answer": "output"},
        },
    ]
    table, report = read_split_seeds("stories", sources)
    assert table.num_rows == 7
    assert set(table.column("kind").to_pylist()) == {"ultrachat", "openhermes"}
    limited, report = read_split_seeds("stories", sources, max_seeds=5)
    assert limited.num_rows == 5 and report["seeds_left_out_by_max_seeds"] == 2
