"""The real-format fixture set (tests/fixtures/real_format, written by its make.py) through the
seeds and prompts stages with the default config's gates, as the workflow runs them: each
gate's count per source, and prompts a careful person would have written from those seeds."""

from __future__ import annotations

import json
import re

import pyarrow.parquet as pq
import pytest

from cosmoforge.core.config import validate_config
from cosmoforge.core.layout import Layout
from cosmoforge.stages.prompts import prompts_stage
from cosmoforge.stages.seeds import seeds_stage

FIXTURES = "tests/fixtures/real_format"


def sources(repo) -> dict[str, list[dict]]:
    here = repo / FIXTURES
    return {
        "web_samples_v1": [
            # compressed JSON lines, gzip and zstd, found by their extensions
            {
                "name": "fineweb_a",
                "kind": "web",
                "format": "jsonl",
                "path": f"{here}/web_fineweb_a.jsonl.gz",
            },
            {
                "name": "fineweb_b",
                "kind": "web",
                "format": "jsonl",
                "path": f"{here}/web_fineweb_b.jsonl.zst",
            },
        ],
        "web_samples_v2": [
            {"name": "fineweb_c", "kind": "web", "format": "hf", "dataset": f"{here}/web_v2_saved"}
        ],
        "stanford": [
            {
                "name": "ocw",
                "kind": "stanford",
                "format": "jsonl",
                "path": f"{here}/stanford_ocw.jsonl",
                "fields": {
                    "id": "course_number",
                    "course_title": "title",
                    "course_description": "description",
                    "section_title": "section",
                    "unit_title": "unit",
                },
            }
        ],
        "openstax": [
            {
                "name": "cnxml",
                "kind": "openstax",
                "format": "jsonl",
                "path": f"{here}/openstax_cnxml.jsonl.bz2",
                "fields": {
                    "book_title": "book",
                    "chapter_title": "chapter",
                    "section_title": "section",
                    "unit_title": "unit",
                    "text": "content",
                },
            }
        ],
        "khanacademy": [
            {
                "name": "khan",
                "kind": "khanacademy",
                "format": "jsonl",
                "path": f"{here}/khan_tree.jsonl",
                "fields": {
                    "course_title": "course",
                    "unit_title": "unit",
                    "lesson_title": "lesson",
                    "lesson_outline": "outline",
                },
            }
        ],
        "wikihow": [
            {
                "name": "wikihow",
                "kind": "wikihow",
                "format": "jsonl",
                "path": f"{here}/wikihow_titles.jsonl",
            }
        ],
        "stories": [
            {
                "name": "ultrachat",
                "kind": "ultrachat",
                "format": "jsonl",
                "path": f"{here}/ultrachat_questions.jsonl",
                "fields": {"question": "prompt"},
            }
        ],
    }


# Per split and source: (rows read, seeds kept, left out by reason, repaired by reason).
EXPECTED = {
    "web_samples_v1": {
        "fineweb_a": (
            17,
            7,
            {"duplicate_text": 6, "other_language": 2, "too_short": 2},
            {"text_repaired": 1},
        ),
        "fineweb_b": (3, 1, {"duplicate_text": 2}, {}),
    },
    "web_samples_v2": {"fineweb_c": (4, 2, {"duplicate_in_web_samples_v1": 2}, {})},
    "stanford": {"ocw": (3, 2, {"empty_after_repair": 1}, {"html_to_text": 2})},
    "openstax": {"cnxml": (3, 3, {}, {"html_to_text": 2})},
    "khanacademy": {"khan": (2, 2, {}, {})},
    "wikihow": {"wikihow": (4, 2, {"duplicate_text": 1, "too_short": 1}, {})},
    "stories": {"ultrachat": (3, 2, {"too_short": 1}, {"text_repaired": 1})},
}


def run_fixture_set(repo, demo_config: dict, base) -> tuple[dict, dict, dict]:
    """Seeds and prompts of every fixture split with the demo config's gates, at the run's
    paths under `base`, as the workflow runs the stages: (config, seed reports, prompt rows)
    by split. measure/real_format_prompts.py prints from it too."""
    import copy

    config = copy.deepcopy(demo_config)
    config["splits"] = {
        split: {**config["splits"][split], "sources": split_sources, "max_seeds": "all"}
        for split, split_sources in sources(repo).items()
    }
    config["topics"]["enabled"] = False
    config["prompts_dir"] = str(repo / "prompts")
    config = validate_config(config)
    layout = Layout(config)
    reports, prompts = {}, {}
    for split in layout.splits:  # config order: web_samples_v1 before web_samples_v2
        seeds = base / layout.seeds(split)
        seeds.parent.mkdir(parents=True, exist_ok=True)
        kept_by = {other: base / layout.seeds(other) for other in layout.yields_to(split)}
        reports[split] = seeds_stage(
            split, layout.seeds_settings(split), seeds, base / layout.seed_report(split), kept_by
        )
        out = base / "prompts" / split
        prompts_stage(
            split, seeds, layout.prompts_settings(split), repo / "prompts", out, out / "r.json"
        )
        prompts[split] = [
            row for path in sorted(out.glob("*.parquet")) for row in pq.read_table(path).to_pylist()
        ]
    return config, reports, prompts


@pytest.fixture(scope="module")
def fixture_run(repo, tmp_path_factory, default_config_raw):
    return run_fixture_set(repo, default_config_raw, tmp_path_factory.mktemp("real_format"))


@pytest.mark.parametrize("split", list(EXPECTED))
def test_each_gate_counts_what_it_left_out_per_source(fixture_run, split):
    _, reports, _ = fixture_run
    got = {
        s["name"]: (s["rows_read"], s["rows_kept"], s["gated_by_reason"], s["repaired_by_reason"])
        for s in reports[split]["sources"]
    }
    assert got == EXPECTED[split]
    assert reports[split]["seeds"] == sum(kept for _, kept, _, _ in EXPECTED[split].values())
    assert all(not s["rows_skipped"] for s in reports[split]["sources"])  # no bad rows: gates


def test_the_language_gate_names_the_languages_it_left_out(fixture_run):
    _, reports, _ = fixture_run
    fineweb_a = reports["web_samples_v1"]["sources"][0]
    assert fineweb_a["languages_left_out"] == {"de": 1, "fr": 1}


MARKUP = re.compile(r"</?[A-Za-z][A-Za-z0-9]*(\s[^<>]*)?/?>|&(amp|lt|gt|quot|#\d+);")
BROKEN = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]|â€|Ã©")


def test_prompts_carry_no_markup_mojibake_or_control_characters(fixture_run):
    _, _, prompts = fixture_run
    for split, rows in prompts.items():
        assert rows, split
        for row in rows:
            assert not BROKEN.search(row["prompt"]), (split, row["prompt"])
            if split in ("stanford", "openstax", "khanacademy"):
                assert not MARKUP.search(row["prompt"]), (split, row["prompt"])
    stanford = " ".join(r["prompt"] for r in prompts["stanford"])
    assert "Physics III: Vibrations & Waves" in stanford and "Damped and driven" in stanford
    assert "• Systems of equations" in stanford  # the list kept as a list
    openstax = " ".join(r["prompt"] for r in prompts["openstax"])
    assert "9.8 m/s² near the Earth’s surface" in openstax
    web = " ".join(r["prompt"] for r in prompts["web_samples_v1"])
    assert "The bakery’s sourdough starter" in web and "the café next door" in web


def test_titles_read_as_one_quoted_title(fixture_run):
    _, _, prompts = fixture_run
    kate = next(r["prompt"] for r in prompts["wikihow"] if "Kate Todd" in r["prompt"])
    assert "Kate Todd from 'NCIS'" in kate and '"NCIS"' not in kate


def test_long_fields_are_cut_at_a_sentence_end_within_extract_chars(fixture_run, repo):
    from cosmoforge.core.config import split_extract_chars
    from cosmoforge.core.contracts import extract

    config, _, prompts = fixture_run
    chars = split_extract_chars(config, "stanford")
    physics = next(r["prompt"] for r in prompts["stanford"] if "Vibrations" in r["prompt"])
    # the 1,000+ character description, as text, is cut on a full stop, not mid-sentence
    description = re.search(r"This course introduces[^\n\"]*", physics).group(0)
    assert len(description) <= chars < len(physics)
    assert description.endswith(
        "Week 9 covers interference and diffraction, with problem sets that "
        "ask students to model real systems."
    )
    # the nested outline (about 2,000 characters) is bounded the same way, at a line end
    khan_chars = split_extract_chars(config, "khanacademy")
    ratios = next(r for r in prompts["khanacademy"] if "Reading a ratio" in r["prompt"])
    outline_source = (repo / FIXTURES / "khan_tree.jsonl").read_text()
    assert len(outline_source) > 2 * khan_chars
    outline = extract(json.loads(outline_source.splitlines()[0])["outline"], khan_chars)
    assert outline in ratios["prompt"] and len(outline) <= khan_chars
