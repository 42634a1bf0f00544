"""The dataset card: README.md of the release, generated from the data and the stage reports."""

from __future__ import annotations

import functools
import json
import shutil
from collections import Counter
from pathlib import Path

import jinja2
import yaml

from cosmoforge.core.declare import (
    SHARDS,
    Command,
    optional_paths,
    path_arg,
    paths_arg,
    per_shard_files,
)
from cosmoforge.core.io import atomic_path, write_json, write_text
from cosmoforge.core.layout import RunPaths
from cosmoforge.core.settings import CardSettings
from cosmoforge.core.tokens import TOKENIZER_NAME
from cosmoforge.reports.card_sections import (
    card_stats,
    contamination_section,
    dedup_section,
    distributions_section,
    generation_section,
    ledger_fates,
    quality_section,
    rows_section,
    seeds_section,
    token_lengths,
    topics_section,
    variant_section,
)
from cosmoforge.stages.quality import FLAGS, merge_diversity
from cosmoforge.stages.topics import PLOTS as TOPIC_PLOTS


def _load_json(paths: list[str | Path]) -> list[dict]:
    return [json.loads(Path(p).read_text(encoding="utf-8")) for p in paths]


def _bar_plot(counts: dict[str, Counter], title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    splits = list(counts)
    categories = sorted({c for counter in counts.values() for c in counter})
    fig, ax = plt.subplots(figsize=(10, 0.45 * max(len(splits), 4) + 1.5))
    left = [0] * len(splits)
    cmap = plt.get_cmap("tab20")
    for i, category in enumerate(categories):
        values = [counts[s].get(category, 0) for s in splits]
        ax.barh(splits, values, left=left, label=category, color=cmap(i % 20))
        left = [a + b for a, b in zip(left, values, strict=True)]
    ax.set_xlabel("rows")
    ax.set_title(title)
    ax.invert_yaxis()
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def _length_plot(lengths: dict[str, Counter], path: Path) -> None:
    """Histogram of token_length per split, from the shards' counts of each length."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4))
    longest = max((max(c) for c in lengths.values() if c), default=1)
    bins = [longest * i / 20 for i in range(21)]
    for split, counts in lengths.items():
        if counts:
            ax.hist(
                list(counts), bins=bins, weights=list(counts.values()), histtype="step", label=split
            )
    ax.set_xlabel("token_length (Mistral tokens, no BOS)")
    ax.set_ylabel("rows")
    ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def build_card(
    release_stats: list[str | Path],
    seed_reports: list[str | Path],
    generation_stats: list[str | Path],
    settings: CardSettings | dict,
    out_readme: str | Path,
    out_stats: str | Path,
    dedup_report: str | Path | None = None,
    contamination: str | Path | None = None,
    benchmarks: str | Path | None = None,
    topics_report: str | Path | None = None,
    ledger: str | Path | None = None,
) -> dict:
    """The card (README.md, rendered from card.md.j2), its plots and stats.json, from the stage
    reports and the release shards' statistics: no released text is read, so the card costs
    the same at any scale. Each section's figures come from one function below; the template
    holds all of the prose."""
    out_readme = Path(out_readme)
    plots = out_readme.parent / "plots"
    shard_stats: dict[str, list[dict]] = {}
    for stats_file in _load_json(release_stats):
        shard_stats.setdefault(stats_file["split"], []).append(stats_file)
    gen = _load_json(generation_stats)
    topics = _read_optional(topics_report)
    sections = {
        "rows": rows_section(shard_stats),
        "fates": ledger_fates(ledger) if ledger else None,
        "quality": quality_section(shard_stats),
        "diversity": merge_diversity(
            [s.get("diversity", {}) for shards in shard_stats.values() for s in shards]
        ),
        "variants": variant_section(shard_stats),
        "distributions": distributions_section(shard_stats),
        "seeds": seeds_section(_load_json(seed_reports)),
        "generation": generation_section(gen),
        "topics": topics_section(topics),
        "dedup": dedup_section(_read_optional(dedup_report)),
        "contamination": contamination_section(
            _read_optional(contamination), _read_optional(benchmarks)
        ),
    }
    for column, counts in sections["distributions"].items():
        _bar_plot(counts, f"{column} per split", plots / f"{column}.png")
    _length_plot(token_lengths(shard_stats), plots / "token_length.png")
    if topics:  # the topic plots travel with the card
        for plot in TOPIC_PLOTS:
            with atomic_path(plots / f"{plot}.png") as tmp:
                shutil.copyfile(Path(topics_report).parent / f"{plot}.png", tmp)
    stats = card_stats(sections)
    write_json(out_stats, stats)
    write_text(out_readme, render_card(sections, CardSettings.of(settings)))
    return stats


def _read_optional(path: str | Path | None) -> dict | None:
    return json.loads(Path(path).read_text(encoding="utf-8")) if path else None


# --- rendering ---------------------------------------------------------------------------------


def _markdown_cell(value, limit: int | None = None) -> str:
    text = str(value)[:limit] if limit else str(value)
    return text.replace("|", "/").replace("\n", " ")


@functools.cache
def _card_template():
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).parent),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters.update(
        pct=lambda x: f"{x:.1%}",
        json=lambda x: json.dumps(x, sort_keys=True),
        cell=_markdown_cell,
        counts=lambda d: ", ".join(f"{k}: {n}" for k, n in d.items()),
        yaml=lambda d: yaml.safe_dump(d, sort_keys=False).strip(),
    )
    return env.get_template("card.md.j2")


def render_card(sections: dict, settings: CardSettings) -> str:
    """The card's markdown: card.md.j2 over the sections' figures and the run's settings."""
    header = {
        "pretty_name": "cosmoforge synthetic dataset",
        "language": ["en"],
        "task_categories": ["text-generation"],
        "configs": [
            {"config_name": split, "data_files": [{"split": "train", "path": f"{split}/*.parquet"}]}
            for split in sections["rows"]["per_split"]
        ],
    }
    text = _card_template().render(
        header=header,
        settings=settings,
        model=settings.model,
        run_name=settings.run_name,
        tokenizer=TOKENIZER_NAME,
        flags=FLAGS,
        topic_plots=TOPIC_PLOTS,
        **sections,
    )
    return text.rstrip() + "\n"


# --- command line ------------------------------------------------------------------------------


def _card_command(args) -> None:
    release_stats = per_shard_files(args, "release_stats", RunPaths.release_stats)
    generation_stats = per_shard_files(args, "generation_stats", RunPaths.generation_stats)
    build_card(
        release_stats,
        args.seed_reports,
        generation_stats,
        args.settings,
        args.out,
        args.stats,
        dedup_report=args.dedup_report,
        contamination=args.contamination,
        benchmarks=args.benchmarks,
        topics_report=args.topics_report,
        ledger=args.ledger,
    )


COMMANDS = (
    Command(
        "card",
        "write the dataset card, statistics and plots",
        _card_command,
        {
            **SHARDS,
            "--release-stats": optional_paths("each shard's statistics"),
            "--seed-reports": paths_arg("every split's seed report"),
            "--generation-stats": optional_paths("each shard's generation statistics"),
            "--settings": CardSettings.argument(),
            "--dedup-report": {"type": Path},
            "--contamination": {"type": Path},
            "--benchmarks": {"type": Path},
            "--topics-report": {"type": Path, "help": "topics/report/report.json"},
            "--ledger": {"type": Path, "help": "ledger.parquet: the fate of every prompt"},
            "--out": path_arg("the card (README.md)"),
            "--stats": path_arg("the card's figures (stats.json)"),
        },
    ),
)
