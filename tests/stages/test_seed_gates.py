"""The seed quality gates (stages/seeds/gates.py) and the check across splits, one at a time.
The real-format fixture set runs them together (tests/stages/test_real_format_seeds.py)."""

from __future__ import annotations

import json
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from cosmoforge.core.errors import ConfigError, SeedError
from cosmoforge.stages.seeds import read_split_seeds, seeds_stage, write_split_seeds
from cosmoforge.stages.seeds.gates import SeedGates

PAGE = "Rivers carry silt to the sea, and deltas grow where the water slows down. " * 4
GERMAN = (
    "Die Flüsse tragen den Schlamm bis zum Meer, und dort, wo das Wasser langsamer fließt, "
    "wachsen die Deltas jedes Jahr ein kleines Stück weiter in das offene Wasser hinaus. "
) * 2
FRENCH = (
    "Les rivières transportent le limon jusqu'à la mer, et les deltas se forment là où "
    "l'eau ralentit et dépose peu à peu ce qu'elle avait emporté depuis les montagnes. "
) * 2


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return path


def web(path, name="web"):
    return {"name": name, "kind": "web", "format": "jsonl", "path": str(path)}


def test_repair_fixes_mojibake_and_control_characters_and_leaves_clean_text_alone(tmp_path):
    clean = "“Curly quotes”, ﬁ ligatures, ｗｉｄｅ letters and café stay as written. " * 3
    broken = "The Mona Lisa doesnâ€™t have eyebrows, and cafÃ© au lait\x10 is brown. " * 3
    path = write_jsonl(tmp_path / "w.jsonl", [{"text": clean}, {"text": broken}])
    table, report = read_split_seeds(
        "web_samples_v1", [web(path)], gates=SeedGates(repair_text=True)
    )
    assert table.column("text").to_pylist() == [
        clean,
        "The Mona Lisa doesn’t have eyebrows, and café au lait is brown. " * 3,
    ]
    assert report["sources"][0]["repaired_by_reason"] == {"text_repaired": 1}
    assert report["sources"][0]["gated_by_reason"] == {}
    # off: the text goes in as it came
    table, report = read_split_seeds("web_samples_v1", [web(path)])
    assert table.column("text").to_pylist()[1] == broken
    assert report["sources"][0]["repaired_by_reason"] == {}


def test_html_becomes_text_in_the_kinds_that_hold_it(tmp_path):
    rows = [
        {
            "course_title": "Calculus <em>I</em>",
            "unit_title": "Limits &amp; continuity",
            "course_description": "<p>We study limits.</p><ul><li>one-sided</li><li>at ∞</li></ul>",
        },
        {"course_title": "Physics", "unit_title": "Forces where a<b and c>d"},  # no markup
        {"course_title": "Chemistry", "unit_title": "<br/><img src='x.png'/>"},
        {"course_title": "Biology", "unit_title": "Cells", "course_description": "<p> </p>"},
    ]
    path = write_jsonl(tmp_path / "s.jsonl", rows)
    source = {"name": "ocw", "kind": "stanford", "format": "jsonl", "path": str(path)}
    table, report = read_split_seeds(
        "stanford", [source], gates=SeedGates(html_to_text=("stanford",))
    )
    assert table.column("course_title").to_pylist() == ["Calculus I", "Physics", "Biology"]
    assert table.column("unit_title").to_pylist() == [
        "Limits & continuity",
        "Forces where a<b and c>d",
        "Cells",
    ]
    assert table.column("course_description").to_pylist() == [
        "We study limits.\n\n  • one-sided\n  • at ∞",
        None,
        None,  # only markup: missing, not an empty string
    ]
    source_report = report["sources"][0]
    assert source_report["repaired_by_reason"] == {"html_to_text": 2}
    assert source_report["gated_by_reason"] == {"empty_after_repair": 1}
    # a kind not listed keeps its markup (web text about HTML is content)
    page = write_jsonl(tmp_path / "w.jsonl", [{"text": "Use <div> and &amp; in HTML. " * 5}])
    table, _ = read_split_seeds(
        "web_samples_v1", [web(page)], gates=SeedGates(html_to_text=("stanford",))
    )
    assert table.column("text").to_pylist() == ["Use <div> and &amp; in HTML. " * 5]


def test_the_language_gate_leaves_out_confident_other_languages_and_counts_them(tmp_path):
    rows = [
        {"text": PAGE},
        {"text": GERMAN},
        {"text": FRENCH},
        {"text": "Jane Doe"},  # too short to tell: a weak guess, kept
        {"text": GERMAN + " extra"},
    ]
    path = write_jsonl(tmp_path / "w.jsonl", rows)
    gates = SeedGates(languages={"web": ["en"]}, language_min_confidence=0.9)
    table, report = read_split_seeds("web_samples_v1", [web(path)], gates=gates)
    assert table.column("row").to_pylist() == [1, 4]
    source = report["sources"][0]
    assert source["gated_by_reason"] == {"other_language": 3}
    assert source["languages_left_out"] == {"de": 2, "fr": 1}
    # the allowed list is the config's: German pages are kept in a German run
    table, _ = read_split_seeds(
        "web_samples_v1", [web(path)], gates=SeedGates(languages={"web": ["de"]})
    )
    assert table.column("row").to_pylist() == [2, 4, 5]


def test_a_split_leaves_out_what_an_earlier_split_of_its_group_kept(tmp_path):
    shared = [f"Shared page {i}: " + PAGE for i in range(3)]
    v1 = write_jsonl(
        tmp_path / "v1.jsonl", [{"id": f"a{i}", "text": t} for i, t in enumerate(shared)]
    )
    v2_rows = [{"id": "b0", "text": shared[0].upper()}, {"id": "b1", "text": "New: " + PAGE}]
    v2_rows += [{"id": "b2", "text": shared[2]}, {"id": "b3", "text": shared[2]}]
    v2 = write_jsonl(tmp_path / "v2.jsonl", v2_rows)
    v1_file = tmp_path / "v1.parquet"
    write_split_seeds("web_samples_v1", [web(v1, "fineweb_a")], v1_file)
    table, report = read_split_seeds(
        "web_samples_v2", [web(v2, "fineweb_b")], yields_to=[("web_samples_v1", v1_file)]
    )
    assert table.column("seed_id").to_pylist() == ["fineweb_b:b1"]
    # b3 repeats b2, which v1 already kept: both are v1's, none is a duplicate within v2
    assert report["sources"][0]["gated_by_reason"] == {"duplicate_in_web_samples_v1": 3}


def test_the_seeds_command_takes_the_earlier_splits_files_and_checks_them(tmp_path):
    v1 = write_jsonl(tmp_path / "v1.jsonl", [{"text": PAGE}])
    v2 = write_jsonl(tmp_path / "v2.jsonl", [{"text": PAGE}, {"text": "Other: " + PAGE}])
    write_split_seeds("web_samples_v1", [web(v1)], tmp_path / "v1.parquet")
    settings = {"sources": [web(v2)], "yields_to": ["web_samples_v1"]}
    command = [sys.executable, "-m", "cosmoforge", "seeds", "--split", "web_samples_v2"]
    command += ["--settings", json.dumps(settings), "--out", str(tmp_path / "v2.parquet")]
    command += ["--report", str(tmp_path / "v2.json")]
    done = subprocess.run(
        [*command, "--kept-by", f"web_samples_v1={tmp_path / 'v1.parquet'}"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert pq.read_table(tmp_path / "v2.parquet").column("row").to_pylist() == [2]
    # the settings name a split whose file is not given: one line, nothing written
    with pytest.raises(SeedError, match=r"--kept-by gives the seed files of no split, but"):
        seeds_stage("web_samples_v2", settings, tmp_path / "x.parquet", tmp_path / "x.json")
    assert not (tmp_path / "x.parquet").exists()


def test_the_config_puts_a_split_in_one_group_and_layout_skips_unbuilt_splits(default_config):
    import copy

    from cosmoforge.core.config import validate_config
    from cosmoforge.core.layout import Layout

    layout = Layout(default_config)
    assert layout.yields_to("web_samples_v2") == ["web_samples_v1"]
    assert layout.yields_to("web_samples_v1") == [] and layout.yields_to("stanford") == []
    config = copy.deepcopy(default_config)
    del config["splits"]["web_samples_v1"]
    assert Layout(config).yields_to("web_samples_v2") == []
    config = copy.deepcopy(default_config)
    config["seeds"]["across_splits"] = [
        ["web_samples_v1", "web_samples_v2"],
        ["stories", "web_samples_v2"],
    ]
    with pytest.raises(ConfigError, match=r"across_splits\[1\]: 'web_samples_v2' is already in"):
        validate_config(config)
