"""The card's figures: what the seed gates did per split, and the engine restarts of the
generation jobs."""

from cosmoforge.reports.card_sections import generation_section, seeds_section


def test_the_seeds_section_sums_each_gate_and_repair_per_split():
    report = {
        "split": "web_samples_v1",
        "seeds": 7,
        "sources": [
            {
                "rows_read": 17,
                "rows_skipped": 0,
                "gated_by_reason": {"too_short": 2, "other_language": 2, "duplicate_text": 6},
                "repaired_by_reason": {"text_repaired": 1},
            },
            {
                "rows_read": 3,
                "rows_skipped": 1,
                "gated_by_reason": {"duplicate_text": 2},
                "repaired_by_reason": {},
            },
        ],
    }
    assert seeds_section([report])["web_samples_v1"] == {
        "seeds": 7,
        "rows_read": 20,
        "rows_skipped": 1,
        "gated": {"duplicate_text": 8, "other_language": 2, "too_short": 2},
        "repaired": {"text_repaired": 1},
    }


def test_the_generation_section_counts_engine_restarts_and_the_seconds_lost():
    shard = {
        "completion_tokens": 100,
        "generate_s": 10.0,
        "engine_start_s": 5.0,
        "resumed_rows": 0,
        "gpu_hours": 0.01,
    }
    restarted = {**shard, "engine_restarts": 2, "engine_lost_s": 40.25}
    section = generation_section([shard, restarted])  # an older shard's stats lack the keys
    assert section["engine_restarts"] == 2 and section["engine_lost_s"] == 40.2
