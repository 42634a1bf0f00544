import dataclasses
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cosmoforge.core.errors import SeedError
from cosmoforge.stages import seeds as seeds_module
from cosmoforge.stages.seeds import read_split_seeds, write_split_seeds


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
    # Reading stops once max_seeds rows are kept: a 10M-row source is not read to the end.
    assert limited.num_rows == 5 and report["stopped_at_max_seeds"] is True
    assert limited.column("seed_id").to_pylist() == table.column("seed_id").to_pylist()[:5]


def mixed_rows(n):
    """n rows with bad ones of every kind spread through them (and duplicate ids far apart)."""
    rows = []
    for i in range(n):
        if i % 11 == 3:
            rows.append({"id": f"s{i}", "text": "  "})
        elif i % 13 == 5:
            rows.append(b"{broken json\n")
        elif i % 17 == 7:
            rows.append({"id": f"s{i}", "text": 5})
        elif i % 19 == 2 and i > 40:
            rows.append({"id": f"s{i - 40}", "text": "an id used forty rows earlier"})
        else:
            rows.append(
                {"id": f"s{i}", "text": f"extract number {i}", "topic": "t" if i % 2 else ""}
            )
    return rows


@pytest.mark.parametrize("batch_rows", [1, 3, 7, 64])
def test_batch_wise_reading_equals_a_whole_read(tmp_path, batch_rows):
    path = tmp_path / "web.jsonl"
    write_jsonl(path, mixed_rows(300))
    pq_path = tmp_path / "web.parquet"
    good = [r for r in mixed_rows(300) if isinstance(r, dict) and isinstance(r["text"], str)]
    pq.write_table(pa.Table.from_pylist(good), pq_path)
    for source in (web_source(path), {**web_source(pq_path), "format": "parquet"}):
        whole, whole_report = read_split_seeds("web_samples_v1", [source], batch_rows=10_000)
        batched, report = read_split_seeds("web_samples_v1", [source], batch_rows=batch_rows)
        assert batched.equals(whole)
        assert report == whole_report
        skipped = report["sources"][0]["skipped_by_reason"]
        assert skipped["duplicate_id"] > 0 and skipped["empty_field"] > 0
    # the column-wise parquet path and the row-wise jsonl path agree on the rows kept
    jsonl_table, _ = read_split_seeds("web_samples_v1", [web_source(path)], batch_rows=batch_rows)
    pq_table, _ = read_split_seeds(
        "web_samples_v1", [{**web_source(pq_path), "format": "parquet"}], batch_rows=batch_rows
    )
    assert jsonl_table.column("seed_id").equals(pq_table.column("seed_id"))
    assert jsonl_table.column("topic").equals(pq_table.column("topic"))


@pytest.mark.parametrize("batch_rows", [7, 64])
def test_a_datasets_source_is_read_as_arrow_batches_like_parquet(tmp_path, batch_rows):
    """format hf streams the dataset as Arrow batches of the kind's columns: the same seeds,
    report and bad-row messages (by row number) as the same rows in a parquet file."""
    good = [r for r in mixed_rows(300) if isinstance(r, dict) and isinstance(r["text"], str)]
    rows = [{**r, "language_score": 0.5} for r in good]  # a column the kind does not read
    folder = tmp_path / "dataset"
    folder.mkdir()
    pq.write_table(pa.Table.from_pylist(rows), folder / "train-00000.parquet")
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "web.parquet")
    hf = {"name": "web", "kind": "web", "format": "hf", "dataset": str(folder)}
    local = {**web_source(tmp_path / "web.parquet"), "format": "parquet"}
    from_hub, hub_report = read_split_seeds("web_samples_v1", [hf], batch_rows=batch_rows)
    from_file, file_report = read_split_seeds("web_samples_v1", [local], batch_rows=batch_rows)
    assert from_hub.drop_columns(["row"]).equals(from_file.drop_columns(["row"]))
    assert from_hub.column("row").equals(from_file.column("row"))
    hub_source, file_source = hub_report["sources"][0], file_report["sources"][0]
    assert hub_source["skipped_by_reason"] == file_source["skipped_by_reason"]
    assert hub_source["skipped_by_reason"]["empty_field"] > 0
    where = str(tmp_path / "web.parquet")
    assert [m.replace(f"hf:{folder}", where) for m in hub_source["examples"]] == (
        file_source["examples"]
    )


@pytest.mark.parametrize("batch_rows", [1, 4, 64])
def test_jsonl_column_wise_and_row_wise_checks_agree(tmp_path, monkeypatch, batch_rows):
    """Chunks of plain string rows are parsed by Arrow and checked column-wise; the result
    equals the row-by-row check's, bad rows, odd whitespace and numeric ids included."""
    odd = [
        {"id": 7, "text": "an integer id"},
        {"id": "ws", "text": "\x1f\u3000 \x85"},  # blank by Python's str.strip
        {"id": "nul", "text": "kept", "topic": None, "url": "  "},
        {"id": "nested", "text": {"a": 1}},
        b'{"id": "surrogate", "text": "\\ud800"}\n',
        b'{"id": "crlf", "text": "windows line"}\r\n',
        b"\n",
        [1, 2],
        {"id": "unicode", "text": "\u00e9t\u00e9 \u2014 \U0001f600", "extra": [1]},
    ]
    rows = mixed_rows(60)
    rows[30:30] = odd
    path = tmp_path / "web.jsonl"
    write_jsonl(path, rows)
    column_wise = read_split_seeds("web_samples_v1", [web_source(path)], batch_rows=batch_rows)
    monkeypatch.setattr(seeds_module, "_arrow_json_batch", lambda *args: None)
    monkeypatch.setattr(seeds_module, "_string_batch", lambda *args: None)
    row_wise = read_split_seeds("web_samples_v1", [web_source(path)], batch_rows=batch_rows)
    assert column_wise[0].equals(row_wise[0])
    assert column_wise[1] == row_wise[1]
    ids = column_wise[0].column("seed_id").to_pylist()
    assert {"web:7", "web:nul", "web:crlf", "web:unicode"} <= set(ids)
    assert not {"web:ws", "web:nested", "web:surrogate"} & set(ids)


def test_jsonl_chunks_of_plain_rows_never_parse_row_by_row(tmp_path, monkeypatch):
    """Arrow parses a chunk whose values are all strings (or missing); only a chunk holding
    an odd row (here a number) goes row by row, and its row numbers stay the file's lines."""
    parsed_rows = []
    parsed_lines = seeds_module._parsed_lines

    def spy(chunk, first):
        parsed_rows.append((first, len(chunk)))
        return parsed_lines(chunk, first)

    monkeypatch.setattr(seeds_module, "_parsed_lines", spy)
    rows = [{"id": f"s{i}", "text": f"extract {i}", "url": None} for i in range(40)]
    rows[25]["text"] = 25
    path = tmp_path / "web.jsonl"
    write_jsonl(path, rows)
    table, report = read_split_seeds("web_samples_v1", [web_source(path)], batch_rows=10)
    assert parsed_rows == [(21, 10)]  # lines 21-30: the chunk with the number in line 26
    assert table.num_rows == 39
    assert report["sources"][0]["examples"] == [
        f"{path}: row 26, field 'text': field 'text' is int, expected string"
    ]


def test_duplicate_detection_is_exact_under_hash_collisions(tmp_path, monkeypatch):
    """With a hash that maps every id onto 4 values, only equal ids count as duplicates."""
    import numpy as np

    from cosmoforge.stages.seeds import seedfile

    monkeypatch.setattr(
        seedfile,
        "hash_ids",
        lambda ids: np.array([sum(map(ord, i)) % 4 for i in ids], dtype=np.uint64),
    )
    path = tmp_path / "web.jsonl"
    write_jsonl(
        path, [{"id": f"u{i}", "text": f"t{i}"} for i in range(40)] + [{"id": "u3", "text": "x"}]
    )
    table, report = read_split_seeds("web_samples_v1", [web_source(path)], batch_rows=5)
    assert sorted(table.column("seed_id").to_pylist()) == sorted(f"web:u{i}" for i in range(40))
    assert report["sources"][0]["skipped_by_reason"] == {"duplicate_id": 1}
    assert report["sources"][0]["rows_kept"] == 40 and report["seeds"] == 40
    assert (
        f"{path}: row 41, field 'id': seed id 'u3' already used at {path}: row 4"
        in (report["sources"][0]["examples"])
    )


def test_duplicate_id_in_error_mode_names_both_rows(tmp_path):
    path = tmp_path / "web.jsonl"
    write_jsonl(
        path, [{"id": "a", "text": "x"}, {"id": "b", "text": "y"}, {"id": "a", "text": "z"}]
    )
    out = tmp_path / "seeds.parquet"
    with pytest.raises(SeedError, match=r"row 3, field 'id': seed id 'a' already used at .*row 1"):
        write_split_seeds("web_samples_v1", [web_source(path)], out, on_bad_row="error")
    assert not out.exists() and list(tmp_path.iterdir()) == [path]


def test_byte_order_marks_are_not_part_of_the_first_row(tmp_path):
    jsonl = tmp_path / "web.jsonl"
    jsonl.write_bytes(b'\xef\xbb\xbf{"id": "first", "text": "a"}\n{"id": "second", "text": "b"}\n')
    table, report = read_split_seeds("web_samples_v1", [web_source(jsonl)])
    assert table.column("seed_id").to_pylist() == ["web:first", "web:second"]
    csv_path = tmp_path / "titles.csv"
    csv_path.write_bytes(b"\xef\xbb\xbfid,title\nk1,How to Knit\nk2,How to Sail\n")
    table, _ = read_split_seeds(
        "wikihow", [{"name": "wh", "kind": "wikihow", "format": "csv", "path": str(csv_path)}]
    )
    assert table.column("seed_id").to_pylist() == ["wh:k1", "wh:k2"]


def test_a_bad_row_deep_in_a_source_is_named_and_nothing_is_written(tmp_path):
    path = tmp_path / "web.jsonl"
    rows = [{"id": f"r{i}", "text": f"row {i}"} for i in range(6000)]
    rows[4999] = b'{"id": "r4999", "text": \n'
    write_jsonl(path, rows)
    out, report = tmp_path / "out" / "seeds.parquet", tmp_path / "out" / "seeds.json"
    with pytest.raises(SeedError, match=rf"{path}: row 5000: not valid JSON"):
        write_split_seeds(
            "web_samples_v1", [web_source(path)], out, report, on_bad_row="error", batch_rows=512
        )
    assert list((tmp_path / "out").iterdir()) == []


def test_no_usable_rows_still_writes_the_report_with_reasons(tmp_path):
    path = tmp_path / "titles.csv"
    path.write_bytes(b"name\nHow to Knit\n")
    out, report = tmp_path / "seeds.parquet", tmp_path / "seeds.json"
    source = {"name": "wh", "kind": "wikihow", "format": "csv", "path": str(path)}
    with pytest.raises(SeedError, match=r"no usable seed rows in .*\(missing_field: 1; see "):
        write_split_seeds("wikihow", [source], out, report)
    assert not out.exists()
    assert json.loads(report.read_text())["sources"][0]["skipped_by_reason"] == {"missing_field": 1}


def test_one_column_may_feed_two_fields_of_a_datasets_source(tmp_path):
    """The preset's AutoMathText maps `id` onto the `url` column, which also fills `url`: the
    column is read once and feeds both fields (it was selected twice, which datasets refuses)."""
    folder = tmp_path / "automathtext"
    folder.mkdir()
    rows = [{"text": f"a worked example number {n}", "url": f"https://x.org/{n}"} for n in range(5)]
    pq.write_table(pa.Table.from_pylist(rows), folder / "train-00000.parquet")
    source = {"name": "amt", "kind": "auto_math_text", "format": "hf", "dataset": str(folder)}
    table, report = read_split_seeds("auto_math_text", [{**source, "fields": {"id": "url"}}])
    assert table.num_rows == 5 and report["seeds"] == 5
    assert table.column("url").to_pylist() == [r["url"] for r in rows]
    assert table.column("seed_id").to_pylist() == [f"amt:{r['url']}" for r in rows]


# --- compressed sources ------------------------------------------------------------------------

COMPRESSORS = {
    ".gz": lambda data: __import__("gzip").compress(data),
    ".bz2": lambda data: __import__("bz2").compress(data),
    ".zst": lambda data: __import__("zstandard").ZstdCompressor().compress(data),
    ".xz": lambda data: __import__("lzma").compress(data),
}


def web_lines(count=30):
    rows = [{"id": f"u{i}", "text": f"web page number {i} about rivers"} for i in range(count)]
    rows[7] = {"id": "u7"}  # a bad row: its row number must survive decompression
    return b"".join((json.dumps(r) + "\n").encode() for r in rows)


@pytest.mark.parametrize("suffix", sorted(COMPRESSORS))
def test_compressed_json_lines_read_as_the_plain_file(tmp_path, suffix):
    plain = tmp_path / "web.jsonl"
    plain.write_bytes(web_lines())
    packed = tmp_path / f"web.jsonl{suffix}"
    packed.write_bytes(COMPRESSORS[suffix](web_lines()))
    expected, expected_report = read_split_seeds("web_samples_v1", [web_source(plain)])
    table, report = read_split_seeds("web_samples_v1", [web_source(packed)], batch_rows=8)
    assert table.equals(expected)
    assert report["sources"][0]["skipped_by_reason"] == {"missing_field": 1}
    assert report["sources"][0]["examples"] == [
        e.replace(str(plain), str(packed)) for e in expected_report["sources"][0]["examples"]
    ]
    assert str(packed) + ": row 8" in report["sources"][0]["examples"][0]


def test_compression_is_found_by_content_when_the_name_does_not_say(tmp_path):
    import gzip

    path = tmp_path / "export.jsonl"  # gzip inside, named as plain JSON lines
    path.write_bytes(gzip.compress(web_lines()))
    table, report = read_split_seeds("web_samples_v1", [web_source(path)])
    assert table.num_rows == 29 and report["sources"][0]["rows_skipped"] == 1


def test_compressed_csv_reads_as_the_plain_file(tmp_path):
    import bz2

    text = "id,text\nc1,a page about hills\nc2,a page about lakes\n"
    (tmp_path / "web.csv").write_text(text)
    (tmp_path / "web.csv.bz2").write_bytes(bz2.compress(text.encode()))
    source = {"name": "web", "kind": "web", "format": "csv"}
    plain, _ = read_split_seeds("web_samples_v1", [{**source, "path": str(tmp_path / "web.csv")}])
    packed, _ = read_split_seeds(
        "web_samples_v1", [{**source, "path": str(tmp_path / "web.csv.bz2")}]
    )
    assert packed.equals(plain) and packed.num_rows == 2


def test_a_truncated_compressed_file_is_one_line_and_writes_nothing(tmp_path):
    import gzip

    path = tmp_path / "web.jsonl.gz"
    path.write_bytes(gzip.compress(web_lines(3000))[:-200])
    out = tmp_path / "seeds.parquet"
    with pytest.raises(SeedError, match=r"web.jsonl.gz: not a readable gzip file \(EOFError"):
        write_split_seeds("web_samples_v1", [web_source(path)], out)
    assert not out.exists() and list(tmp_path.iterdir()) == [path]


# --- field mappings ----------------------------------------------------------------------------


@pytest.mark.parametrize("file_format", ["jsonl", "parquet"])
def test_a_mapped_field_that_matches_no_column_is_one_line(tmp_path, file_format):
    rows = [{"doc": f"page {i} on soils", "meta": {"url": f"https://x/{i}"}} for i in range(5)]
    path = tmp_path / f"web.{file_format}"
    if file_format == "jsonl":
        write_jsonl(path, rows)
    else:
        pq.write_table(pa.Table.from_pylist(rows), path)
    source = web_source(path, format=file_format, fields={"text": "doc", "url": "meta.url"})
    out = tmp_path / "seeds.parquet"
    with pytest.raises(
        SeedError,
        match=rf"web.{file_format}: fields.url: column 'meta.url' is missing or empty in all 5 "
        r"usable rows of source 'web'",
    ):
        write_split_seeds("web_samples_v1", [source], out)
    assert not out.exists()


def test_a_mapped_field_with_values_in_some_rows_is_kept(tmp_path):
    path = tmp_path / "web.jsonl"
    write_jsonl(path, [{"doc": "page one", "link": "https://x/1"}, {"doc": "page two"}])
    source = web_source(path, fields={"text": "doc", "url": "link"})
    table, _ = read_split_seeds("web_samples_v1", [source])
    assert table.column("url").to_pylist() == ["https://x/1", None]


# --- length gates ------------------------------------------------------------------------------


@pytest.mark.parametrize("batch_rows", [4, 4096])
def test_length_gates_leave_out_tiny_and_huge_seeds_and_count_them(tmp_path, batch_rows):
    from cosmoforge.stages.seeds.gates import SeedGates

    texts = ["Ada Lovelace", "x" * 5000] + [f"a long enough page number {i} " * 4 for i in range(6)]
    rows = [{"id": f"u{i}", "text": t} for i, t in enumerate(texts)]
    rows.append({"id": "bad"})  # a bad row is still a bad row, counted apart
    path = tmp_path / "web.jsonl"
    write_jsonl(path, rows)
    gates = SeedGates(min_chars={"web": 30}, max_chars={"web": 1000})
    table, report = read_split_seeds(
        "web_samples_v1", [web_source(path)], on_bad_row="skip", gates=gates, batch_rows=batch_rows
    )
    assert table.column("seed_id").to_pylist() == [f"web:u{i}" for i in range(2, 8)]
    source = report["sources"][0]
    assert source["gated_by_reason"] == {"too_long": 1, "too_short": 1}
    assert source["rows_gated"] == 2 and source["skipped_by_reason"] == {"missing_field": 1}
    assert source["rows_read"] == 9 and source["rows_kept"] == 6


def test_a_gated_seed_is_not_an_error_even_with_on_bad_row_error(tmp_path):
    from cosmoforge.stages.seeds.gates import SeedGates

    path = tmp_path / "web.jsonl"
    write_jsonl(path, [{"text": "tiny"}, {"text": "a web page with enough words in it " * 3}])
    gates = SeedGates(min_chars={"web": 30})
    table, report = read_split_seeds("web_samples_v1", [web_source(path)], "error", gates=gates)
    assert table.num_rows == 1 and report["sources"][0]["gated_by_reason"] == {"too_short": 1}


def test_every_seed_gated_is_the_no_usable_rows_error_with_the_reason(tmp_path):
    from cosmoforge.stages.seeds.gates import SeedGates

    path = tmp_path / "web.jsonl"
    write_jsonl(path, [{"text": "tiny"}, {"text": "also tiny"}])
    with pytest.raises(SeedError, match=r"no usable seed rows in .*web.jsonl \(too_short: 2\)"):
        read_split_seeds("web_samples_v1", [web_source(path)], gates=SeedGates({"web": 30}))


def test_the_workflow_gates_by_the_config(tmp_path, default_config):
    """The seeds stage as a rule runs it: the config's default gates, from SeedSettings."""
    from cosmoforge.core.layout import Layout
    from cosmoforge.stages.seeds import seeds_stage

    path = tmp_path / "web.jsonl"
    write_jsonl(path, [{"text": "Jane Doe"}, {"text": "a page about the water cycle " * 10}])
    settings = Layout(default_config).seeds_settings("web_samples_v1")
    settings = dataclasses.replace(settings, sources=[web_source(path)])
    report = seeds_stage("web_samples_v1", settings, tmp_path / "s.parquet", tmp_path / "r.json")
    assert report["seeds"] == 1
    assert report["sources"][0]["gated_by_reason"] == {"too_short": 1}
    assert json.loads((tmp_path / "r.json").read_text()) == report


# --- local datasets folders --------------------------------------------------------------------


def test_a_save_to_disk_folder_reads_like_its_rows(tmp_path):
    import datasets

    rows = [{"id": f"s{i}", "text": f"a saved page number {i}", "extra": i} for i in range(9)]
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "saved"))
    datasets.DatasetDict(
        {"train": datasets.Dataset.from_list(rows), "test": datasets.Dataset.from_list(rows[:2])}
    ).save_to_disk(str(tmp_path / "saved_dict"))
    source = {"name": "web", "kind": "web", "format": "hf"}
    table, report = read_split_seeds(
        "web_samples_v1", [{**source, "dataset": str(tmp_path / "saved")}], batch_rows=4
    )
    assert table.column("seed_id").to_pylist() == [f"web:s{i}" for i in range(9)]
    assert table.column("row").to_pylist() == list(range(1, 10)) and report["seeds"] == 9
    test_split, _ = read_split_seeds(
        "web_samples_v1",
        [{**source, "dataset": str(tmp_path / "saved_dict"), "dataset_split": "test"}],
    )
    assert test_split.column("seed_id").to_pylist() == ["web:s0", "web:s1"]
    with pytest.raises(SeedError, match=r"no split 'validation' .*the folder has test, train"):
        read_split_seeds(
            "web_samples_v1",
            [{**source, "dataset": str(tmp_path / "saved_dict"), "dataset_split": "validation"}],
        )


def test_a_missing_local_datasets_folder_is_one_line_in_check_and_in_the_job(
    tmp_path, default_config
):
    import copy

    from cosmoforge.core.config import check_inputs

    missing = str(tmp_path / "nowhere")
    source = {"name": "web", "kind": "web", "format": "hf", "dataset": missing}
    with pytest.raises(SeedError, match=r"hf:.*nowhere: no such folder \(source 'web', dataset\)"):
        read_split_seeds("web_samples_v1", [source])
    config = copy.deepcopy(default_config)
    config["splits"]["web_samples_v1"]["sources"] = [source]
    problems = check_inputs(config, ".")
    assert [p for p in problems if "nowhere" in p] == [
        f"config: splits.web_samples_v1.sources[0].dataset: no such folder {missing} (a local "
        "datasets source is a folder of data files or a save_to_disk folder; a hub id is "
        "org/name)"
    ]


# --- repeated texts ----------------------------------------------------------------------------


def test_a_text_seen_before_in_the_split_is_kept_once_whatever_its_source_or_id(tmp_path):
    page = "Rivers carry sediment to the sea, and deltas grow where it settles. " * 3
    other = "Glaciers carve valleys over thousands of years of slow movement. " * 3
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    # Seven copies of one page under other ids inside a source, as a real export had.
    write_jsonl(
        first, [{"id": f"a{i}", "text": page} for i in range(7)] + [{"id": "g", "text": other}]
    )
    # The second source is a subset of the first, with other ids and other spacing and case.
    write_jsonl(
        second,
        [
            {"id": "b1", "text": "  " + page.upper().replace(" ", "  ")},
            {"id": "b2", "text": "A new page about tides and the moon."},
        ],
    )
    sources = [
        {"name": "one", "kind": "web", "format": "jsonl", "path": str(first)},
        {"name": "two", "kind": "web", "format": "jsonl", "path": str(second)},
    ]
    table, report = read_split_seeds("web_samples_v2", sources, batch_rows=3)
    assert table.column("seed_id").to_pylist() == ["one:a0", "one:g", "two:b2"]
    one, two = report["sources"]
    assert one["gated_by_reason"] == {"duplicate_text": 6} and one["rows_kept"] == 2
    assert two["gated_by_reason"] == {"duplicate_text": 1} and two["rows_kept"] == 1
    assert report["seeds"] == 3


def test_titles_repeat_only_when_every_required_field_does(tmp_path):
    """Units are the same seed only with the same book, chapter, section and unit title."""
    path = tmp_path / "units.jsonl"
    unit = {"book_title": "Chemistry", "chapter_title": "Water", "section_title": "Bonds"}
    write_jsonl(
        path,
        [
            {**unit, "id": "u1", "unit_title": "Introduction"},
            {**unit, "id": "u2", "unit_title": "Introduction", "section_title": "Solvents"},
            {**unit, "id": "u3", "unit_title": "introduction "},
        ],
    )
    source = {"name": "ox", "kind": "openstax", "format": "jsonl", "path": str(path)}
    table, report = read_split_seeds("openstax", [source])
    assert table.column("seed_id").to_pylist() == ["ox:u1", "ox:u2"]
    assert report["sources"][0]["gated_by_reason"] == {"duplicate_text": 1}
