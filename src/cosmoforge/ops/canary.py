"""The canary: a few prompts per template through the configured model, before the big run.

It uses the generation code of a shard (same engine settings, chat template, seeds) on
`per_template` prompts of every template, then the quality flags and diversity figures of the
release step, and writes `results/<run>/canary/report.json` and `report.md` with a verdict per
template: what to look at before spending GPU-hours (texts cut at max_tokens, loops, refusals,
stock openings, texts far shorter than asked).
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from cosmoforge.core.declare import Command, config_value_arg, json_arg, path_arg, settings_arg
from cosmoforge.core.errors import CosmoforgeError
from cosmoforge.core.io import write_json, write_text
from cosmoforge.core.settings import GenerationSettings
from cosmoforge.core.tables import PROMPT_SCHEMA
from cosmoforge.core.tokens import count_tokens
from cosmoforge.ops.calibrate import (
    PROBE_ARGUMENTS,
    generate_probe,
    prompts_by_template,
    split_prompt_files,
)
from cosmoforge.stages.quality import FLAGS, Diversity, QualityFlags, merge_diversity

# A template gets a warning above these shares of its canary texts.
LIMITS = {
    "truncated": 0.3,
    "repetition": 0.1,
    "refusal_or_meta": 0.0,
    "boilerplate_opening": 0.2,
    "too_short": 0.2,
}


def per_template_sample(prompt_files: dict[str, list[str | Path]], per_template: int, seed: int):
    """`per_template` prompts of every template, in a seeded order, reading shard files only
    until every template of the split has enough."""
    chosen = []
    for _, files in sorted(prompt_files.items()):
        by_template = prompts_by_template(
            files,
            lambda b: bool(b) and min(map(len, b.values())) >= 4 * per_template,
            seed,
            "canary",
        )
        for rows in by_template.values():
            chosen += rows[:per_template]
    if not chosen:
        raise CosmoforgeError("canary: the run's prompt files hold no prompts")
    return pa.Table.from_pylist(chosen, schema=PROMPT_SCHEMA)


def run_canary(
    prompt_files: dict[str, list[str | Path]],
    settings: GenerationSettings | dict,
    quality: dict,
    min_token_length: int,
    out_dir: str | Path,
    per_template: int = 3,
    target_words: dict[str, int] | None = None,
    engine_factory=None,
) -> dict:
    out_dir = Path(out_dir)
    settings = GenerationSettings.of(settings)
    sample = per_template_sample(prompt_files, per_template, settings.seed)
    generated = out_dir / "generated.parquet"
    generate_probe(sample, settings, generated, engine_factory)
    rows = pq.read_table(generated).to_pylist()
    checker = QualityFlags(quality, min_token_length)
    diversity = Diversity()
    per_template: dict[str, dict] = {}
    lengths = count_tokens([r["text"] or "" for r in rows])
    for row, tokens in zip(rows, lengths, strict=True):
        entry = per_template.setdefault(
            row["template_id"],
            {
                "split": row["split"],
                "texts": 0,
                "tokens": 0,
                "errors": 0,
                **dict.fromkeys(FLAGS, 0),
            },
        )
        if row["error"]:
            entry["errors"] += 1
            continue
        entry["texts"] += 1
        entry["tokens"] += tokens
        for flag in checker.of(row["text"] or "", row["finish_reason"], tokens):
            entry[flag] += 1
        diversity.add(row["template_id"], row["text"] or "")
    merged = merge_diversity([diversity.stats()])
    for template, entry in per_template.items():
        entry["mean_tokens"] = round(entry["tokens"] / entry["texts"], 1) if entry["texts"] else 0
        entry["top_opening"] = (merged.get(template, {}).get("top_openings_3") or [None])[0]
        entry["verdict"] = verdict(entry, (target_words or {}).get(entry["split"]))
    report = {"prompts": len(rows), "per_template": dict(sorted(per_template.items()))}
    write_json(out_dir / "report.json", report)
    write_text(out_dir / "report.md", format_canary(report))
    return report


def verdict(entry: dict, target_words: int | None) -> str:
    if entry["errors"] and not entry["texts"]:
        return "FAIL: every request failed"
    problems = [
        f"{flag} {entry[flag]}/{entry['texts']}"
        for flag, limit in LIMITS.items()
        if entry["texts"] and entry[flag] / entry["texts"] > limit
    ]
    # ~1.3 tokens per word: far shorter than asked means the prompt's length request is ignored.
    if target_words and entry["texts"] and entry["mean_tokens"] < 0.4 * target_words * 1.3:
        problems.append(f"mean {entry['mean_tokens']:.0f} tokens for ~{target_words} words asked")
    return "OK" if not problems else "WARN: " + "; ".join(problems)


def format_canary(report: dict) -> str:
    lines = [f"canary: {report['prompts']} prompts", ""]
    for template, e in report["per_template"].items():
        lines.append(
            f"{template:<48} {e['texts']:>3} texts, {e['mean_tokens']:>6.0f} tokens, "
            f"opening '{e['top_opening'] or '-'}': {e['verdict']}"
        )
    return "\n".join(lines) + "\n"


# --- command line ------------------------------------------------------------------------------


def _canary_command(args) -> None:
    report = run_canary(
        split_prompt_files(args.prompts_dirs),
        args.settings,
        args.quality,
        args.min_token_length,
        args.out_dir,
        per_template=args.per_template,
        target_words=args.target_words,
    )
    print(format_canary(report), end="")


COMMANDS = (
    Command(
        "canary",
        "a few prompts per template through the model, with a quality verdict",
        _canary_command,
        {
            **PROBE_ARGUMENTS,
            "--quality": {"required": True, "type": settings_arg("quality")},
            "--min-token-length": {
                "required": True,
                "type": config_value_arg("release.min_token_length", int),
            },
            "--target-words": {"type": json_arg, "help": 'JSON: {"split": words asked for}'},
            "--per-template": {"type": int, "default": 3},
            "--out-dir": path_arg("results/<run>/canary"),
        },
    ),
)
