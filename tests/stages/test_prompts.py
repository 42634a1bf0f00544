import hashlib
import json

import pyarrow.parquet as pq
import pytest

from cosmoforge.core.contracts import shard_bounds
from cosmoforge.stages.prompts import build_prompt_rows, write_split_prompts
from cosmoforge.stages.seeds import read_split_seeds, write_split_seeds
from cosmoforge.stages.templates import load_templates


def bundled_seeds(config, split):
    split_cfg = config["splits"][split]
    return read_split_seeds(split, split_cfg["sources"])[0]


def build(repo, config, split, shards=1, seed=1234, topic_probability=None):
    split_cfg = config["splits"][split]
    return build_prompt_rows(
        split,
        bundled_seeds(config, split),
        load_templates(repo / "prompts", split),
        seed=seed,
        shards=shards,
        topic_probability=(
            split_cfg["topic_probability"] if topic_probability is None else topic_probability
        ),
    )


def seed_file(config, split, path, max_seeds=None):
    write_split_seeds(split, config["splits"][split]["sources"], path, max_seeds=max_seeds)
    return path


def shard_files(repo, config, split, seeds, shards, folder, **options):
    templates = load_templates(repo / "prompts", split)
    write_split_prompts(split, seeds, templates, shards, folder, seed=1234, **options)
    paths = [folder / f"{shard:05d}.parquet" for shard in range(shards)]
    reports = [json.loads(p.with_suffix(".report.json").read_text()) for p in paths]
    return paths, reports


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_building_twice_gives_byte_identical_files(repo, default_config, tmp_path):
    seeds = seed_file(default_config, "web_samples_v2", tmp_path / "seeds.parquet")
    runs = []
    for attempt in range(2):
        folder = tmp_path / f"run{attempt}"
        paths, _ = shard_files(repo, default_config, "web_samples_v2", seeds, 3, folder)
        runs.append([digest(p) for p in paths])
    assert runs[0] == runs[1]


def test_streamed_shards_equal_the_in_memory_build(repo, default_config, tmp_path):
    for split in ("openstax", "stories", "khanacademy"):
        seeds = seed_file(default_config, split, tmp_path / f"{split}.parquet")
        paths, reports = shard_files(repo, default_config, split, seeds, 3, tmp_path / split)
        streamed = [r for p in paths for r in pq.read_table(p).to_pylist()]
        assert streamed == build(repo, default_config, split, shards=3)
        assert [r["prompts"] for r in reports] == [pq.read_table(p).num_rows for p in paths]


def test_a_shard_does_not_change_when_another_shards_seeds_do(repo, tmp_path):
    def seeds(texts):
        path = tmp_path / "web.jsonl"
        path.write_text(
            "".join(json.dumps({"id": f"w{i}", "text": t}) + "\n" for i, t in enumerate(texts))
        )
        out = tmp_path / "seeds.parquet"
        write_split_seeds(
            "web_samples_v1",
            [{"name": "w", "kind": "web", "format": "jsonl", "path": str(path)}],
            out,
        )
        return out

    texts = [f"An extract about subject {i}, long enough to matter." for i in range(9)]
    first, _ = shard_files(repo, {}, "web_samples_v1", seeds(texts), 3, tmp_path / "a")
    texts[7] = "A changed extract in the last shard."
    second, _ = shard_files(repo, {}, "web_samples_v1", seeds(texts), 3, tmp_path / "b")
    assert digest(first[0]) == digest(second[0]) and digest(first[1]) == digest(second[1])
    assert digest(first[2]) != digest(second[2])


@pytest.mark.parametrize("seeds, shards", [(10, 3), (3, 5), (0, 2), (773, 773), (100_000, 7)])
def test_shard_bounds_cover_every_seed_once_in_order(seeds, shards):
    bounds = shard_bounds(seeds, shards)
    assert bounds[0] == 0 and bounds[-1] == seeds and bounds == sorted(bounds)
    owner = [k for k in range(shards) for _ in range(bounds[k], bounds[k + 1])]
    assert owner == [i * shards // seeds for i in range(seeds)]


def test_sample_ids_are_unique_and_stable(repo, default_config):
    first = build(repo, default_config, "openstax")
    second = build(repo, default_config, "openstax", seed=99)
    ids = [r["sample_id"] for r in first]
    assert len(ids) == len(set(ids))
    # The id names the (split, seed, template, variant); it does not depend on the global seed.
    assert ids == [r["sample_id"] for r in second]


def test_topic_always_in_v1_and_about_half_the_time_in_v2(repo, default_config):
    v1 = build(repo, default_config, "web_samples_v1")
    assert all(r["topic_injected"] and f'"{r["topic"]}"' in r["prompt"] for r in v1)
    v2 = build(repo, default_config, "web_samples_v2", topic_probability=0.5)
    injected = [r["topic_injected"] for r in v2]
    assert 0.25 < sum(injected) / len(injected) < 0.75
    for row in v2:
        assert (f'"{row["topic"]}"' in row["prompt"]) == row["topic_injected"]
    # A different global seed flips different coins; the same seed flips the same ones.
    assert injected == [
        r["topic_injected"]
        for r in build(repo, default_config, "web_samples_v2", topic_probability=0.5)
    ]
    other = build(repo, default_config, "web_samples_v2", seed=7, topic_probability=0.5)
    assert injected != [r["topic_injected"] for r in other]


def test_seed_variants_are_adjacent_and_share_the_prompt_opening(repo, default_config):
    rows = build(repo, default_config, "openstax")
    order = [r["seed_id"] for r in rows]
    # Each seed's prompts form one contiguous run.
    runs = [s for i, s in enumerate(order) if i == 0 or order[i - 1] != s]
    assert len(runs) == len(set(runs))
    per_seed = {}
    for r in rows:
        per_seed.setdefault(r["seed_id"], []).append(r)
    for seed_rows in per_seed.values():
        assert len(seed_rows) == 8 or all(r["variant"] == "no_reference" for r in seed_rows)
        prefix = seed_rows[0]["prompt"].split("\n")[0]
        assert all(r["prompt"].startswith(prefix) for r in seed_rows)


def test_openstax_previous_units_are_in_order_without_repeats(repo, default_config):
    rows = build(repo, default_config, "openstax")
    third = next(r for r in rows if r["seed_id"] == "openstax:ox-003")
    assert (
        'Units already in this section: "Hydrogen bonding", "Water as a solvent".'
        in third["prompt"]
    )
    first = next(r for r in rows if r["seed_id"] == "openstax:ox-001")
    assert "Units already" not in first["prompt"]  # no list (and no instruction) without units
    # ox-003 has no reference text: only the no_reference variants exist for it.
    assert {r["variant"] for r in rows if r["seed_id"] == "openstax:ox-003"} == {"no_reference"}


def test_khan_lessons_list_earlier_lessons_with_balanced_quotes(repo, default_config):
    rows = build(repo, default_config, "khanacademy")
    third = next(r for r in rows if r["seed_id"] == "khanacademy:ka-003")
    assert (
        'Lessons already in this unit: "What a fraction means", "Equivalent fractions".'
        in third["prompt"]
    )
    assert all(r["prompt"].count('"') % 2 == 0 for r in rows)


def test_shards_are_contiguous_blocks_of_seeds(repo, default_config, tmp_path):
    rows = build(repo, default_config, "stories", shards=3)
    shards_per_seed = {}
    for r in rows:
        shards_per_seed.setdefault(r["seed_id"], set()).add(r["shard"])
    assert all(len(s) == 1 for s in shards_per_seed.values())
    assert [r["shard"] for r in rows] == sorted(r["shard"] for r in rows)
    assert {r["shard"] for r in rows} == {0, 1, 2}


def test_cli_prompts_and_seeds_stages(repo, default_config, tmp_path):
    from cosmoforge.cli import main

    split = default_config["splits"]["wikihow"]
    seeds, report = tmp_path / "s.parquet", tmp_path / "s.json"
    settings = json.dumps({"sources": split["sources"], "on_bad_row": "error", "max_seeds": 3})
    assert (
        main(
            [
                "seeds",
                "--split",
                "wikihow",
                "--settings",
                settings,
                "--out",
                str(seeds),
                "--report",
                str(report),
            ]
        )
        == 0
    )
    settings = json.dumps({"seed": 1, "shards": 2, "extract_chars": 1000, "templates": None})
    out, report = tmp_path / "prompts", tmp_path / "p.json"
    args = ["prompts", "--split", "wikihow", "--seeds", str(seeds), "--settings", settings]
    args += ["--prompts-dir", str(repo / "prompts"), "--out-dir", str(out), "--report", str(report)]
    assert main(args) == 0
    assert json.loads(report.read_text())["per_shard"] == {"0": 2, "1": 1}
    assert [pq.read_table(out / f"0000{k}.parquet").num_rows for k in (0, 1)] == [2, 1]


def test_cli_reports_bad_seed_without_traceback(tmp_path, capsys):
    from cosmoforge.cli import main

    bad = tmp_path / "w.jsonl"
    bad.write_text('{"title": 3}\n')
    source = {"name": "w", "kind": "wikihow", "format": "jsonl", "path": str(bad)}
    out = tmp_path / "s.parquet"
    code = main(
        [
            "seeds",
            "--split",
            "wikihow",
            "--settings",
            json.dumps({"sources": [source], "on_bad_row": "error"}),
            "--out",
            str(out),
            "--report",
            str(tmp_path / "r.json"),
        ]
    )
    assert code == 2
    assert f"{bad}: row 1, field 'title'" in capsys.readouterr().err
    assert not out.exists()


def test_a_title_with_its_own_quotes_reads_as_one_quoted_title(repo, tmp_path):
    """WikiHow titles and OpenStax units that quote a name keep the prompt's quotes balanced."""
    import pyarrow as pa

    wikihow = pa.Table.from_pylist(
        [
            {
                "seed_id": "wh:1",
                "source": "wh",
                "kind": "wikihow",
                "row": 1,
                "title": ' How to Be Like Kate Todd from "NCIS" ',
            },
        ]
    )
    rows = build_prompt_rows(
        "wikihow", wikihow, load_templates(repo / "prompts", "wikihow"), seed=1, shards=1
    )
    assert "\"How to Be Like Kate Todd from 'NCIS'\"" in rows[0]["prompt"]
    assert all(r["prompt"].count('"') % 2 == 0 for r in rows)
    units = [
        {
            "seed_id": f"ox:{i}",
            "source": "ox",
            "kind": "openstax",
            "row": i,
            "book_title": "B",
            "chapter_title": "C",
            "section_title": "S",
            "unit_title": title,
            "text": None,
        }
        for i, title in enumerate(['The "ideal" gas', "Real gases"])
    ]
    rows = build_prompt_rows(
        "openstax",
        pa.Table.from_pylist(units),
        load_templates(repo / "prompts", "openstax"),
        seed=1,
        shards=1,
    )
    second = next(r for r in rows if r["seed_id"] == "ox:1")
    assert "Units already in this section: \"The 'ideal' gas\"." in second["prompt"]
    assert all(r["prompt"].count('"') % 2 == 0 for r in rows)


def test_a_khan_lesson_outline_is_bounded_like_every_long_field(repo):
    import pyarrow as pa

    outline = "Warm-up with counters. " * 200  # 4,600 characters
    lesson = {
        "seed_id": "ka:1",
        "source": "ka",
        "kind": "khanacademy",
        "row": 1,
        "course_title": "Math",
        "unit_title": "Fractions",
        "lesson_title": "Halves",
        "lesson_outline": outline,
    }
    rows = build_prompt_rows(
        "khanacademy",
        pa.Table.from_pylist([lesson]),
        load_templates(repo / "prompts", "khanacademy"),
        seed=1,
        shards=1,
        extract_chars=300,
    )
    assert rows and all("Warm-up with counters." in r["prompt"] for r in rows)
    assert all(
        r["prompt"].count("Warm-up") <= 300 // len("Warm-up with counters. ") + 1 for r in rows
    )
