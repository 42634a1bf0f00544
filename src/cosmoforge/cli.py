"""Command line: one subcommand per pipeline stage; each Snakemake rule makes one call.

Structured settings (a config section) are passed as one JSON argument, so a rule hands over
exactly the part of the config it depends on, and Snakemake reruns a job when that part changes.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path

from . import SPLITS
from .errors import ConfigError, CosmoforgeError


def _json(value: str) -> dict:
    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON: {exc}") from exc


# A stage's own arguments obey the config schema's rules for the keys they come from, so a
# stage run by hand accepts exactly what a config would (`--threshold 1.5` is refused).


def _checked(key: str, value):
    from .config import check_setting

    try:
        check_setting(key, value)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(f"{exc} (the config schema's rule)") from None
    return value


def _config_value(key: str, convert: Callable):
    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a {convert.__name__}: {text!r}") from None
        return _checked(key, value)

    return parse


def _settings(section: str | None = None, **keys: str):
    """JSON settings: the whole of a config `section`, or each listed field by its key."""

    def parse(text: str) -> dict:
        value = _json(text)
        if section is not None:
            return _checked(section, value)
        if not isinstance(value, dict):
            raise argparse.ArgumentTypeError("expected a JSON object")
        for name, key in keys.items():
            if name in value:
                _checked(key, value[name])
        return value

    return parse


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {value}")
    return value


def _run_config(args) -> dict:
    """The validated config of `--config`, with `--run-name` if given."""
    from .config import load_config

    return load_config(args.config, {"run_name": args.run_name} if args.run_name else None)


def cmd_convert_model(args) -> None:
    from .model import convert_gguf

    convert_gguf(args.package, args.file, args.out)


def cmd_seeds(args) -> None:
    from .seeds import seeds_stage

    seeds_stage(args.split, args.settings, args.out, args.report)


def cmd_prompts(args) -> None:
    from .prompts import prompts_stage

    prompts_stage(
        args.split,
        args.seeds,
        args.settings,
        args.prompts_dir,
        args.out_dir,
        args.report,
        topic_assignments=args.topic_assignments,
        topic_decisions=args.topic_decisions,
    )


def cmd_generate(args) -> None:
    from .generate import generate_shard

    generate_shard(args.prompts, args.out, args.settings, stats_path=args.stats)


def cmd_release(args) -> None:
    from .release import release_shard

    release_shard(
        args.split,
        args.shard,
        args.out,
        args.stats,
        args.min_token_length,
        drop_truncated=args.drop_truncated,
        quality=args.quality,
    )


def cmd_finish_shard(args) -> None:
    from .shard import finish_shard

    names = (
        "deduped",
        "removed",
        "stayed",
        "clean",
        "contaminated",
        "release",
        "stats",
        "left_out",
    )
    finish_shard(
        args.split,
        args.generated,
        rank=args.rank,
        tasks=args.tasks,
        clusters_dir=args.clusters,
        index=args.index,
        threshold=args.threshold,
        min_token_length=args.min_token_length,
        drop_truncated=args.drop_truncated,
        quality=args.quality,
        outputs={name: getattr(args, name) for name in names},
        logging_dir=args.logging_dir,
    )


def cmd_card(args) -> None:
    from .card import build_card

    build_card(
        args.release_stats,
        args.seed_reports,
        args.generation_stats,
        args.settings,
        args.out,
        args.stats,
        dedup_report=args.dedup_report,
        contamination=args.contamination,
        benchmarks=args.benchmarks,
        topics_report=args.topics_report,
        ledger=args.ledger,
    )


def cmd_topics(args) -> None:
    from . import topics

    s = args.settings
    if args.stage == "embed":
        topics.embed_shard(args.seeds[0], args.split, args.shard, args.shards, s, args.out)
    elif args.stage == "fit":
        topics.fit_kmeans(args.embeddings, s, args.out, args.fit_report, args.map_sample)
    elif args.stage == "assign":
        topics.assign_shard(args.embeddings[0], args.centroids, args.out)
    elif args.stage == "label":
        seeds = dict(item.split("=", 1) for item in args.split_seeds)
        topics.label_clusters(args.assignments, seeds, s["k"], s, args.out)
    elif args.stage == "decide":
        topics.decide(args.labels, s, args.out)
    elif args.stage == "report":
        topics.topics_report(
            args.decisions,
            args.labels,
            args.assignments,
            args.map_sample,
            args.centroids,
            args.fit_report,
            s,
            args.out_dir,
        )


def cmd_plan(args) -> None:
    from .plan import build_plan, format_plan, plan_json

    config = _run_config(args)
    plan = build_plan(config, args.base_dir)
    print(plan_json(plan) if args.json else format_plan(plan))


def cmd_check(args) -> None:
    from .config import check_inputs, load_config

    config = load_config(args.config)
    missing = check_inputs(config, args.base_dir)
    if missing:
        raise ConfigError(f"{len(missing)} configured input(s) missing:\n  " + "\n  ".join(missing))
    print(f"{args.config}: valid; {len(config['splits'])} split(s), every configured input exists")


def cmd_ledger(args) -> None:
    from .config import validate_config
    from .ledger import write_ledger

    config = validate_config(args.settings, source="--settings")
    counts = write_ledger(config, args.stayed, args.out)
    print(json.dumps(counts, indent=2))


def cmd_explain(args) -> None:
    from .ledger import explain

    config = _run_config(args)
    print(explain(config, args.sample_id, args.base_dir))


def _prompt_files(items: list[str]) -> dict[str, list[Path]]:
    """SPLIT=DIR arguments: each split's prompt shard files."""
    return {
        split: sorted(Path(folder).glob("[0-9]*.parquet"))
        for split, _, folder in (item.partition("=") for item in items)
    }


def _probe_arguments(p) -> None:
    """The arguments of the commands that run a probe of the run's prompts."""
    p.add_argument("--prompts-dirs", required=True, nargs="+", metavar="SPLIT=DIR")
    p.add_argument(
        "--settings",
        required=True,
        type=_settings(seed="seed", model="model", engine="engine", sampling="sampling"),
        help="as for generate",
    )


def cmd_canary(args) -> None:
    from .canary import format_canary, run_canary

    prompt_files = _prompt_files(args.prompts_dirs)
    report = run_canary(
        prompt_files,
        args.settings,
        args.quality,
        args.min_token_length,
        args.out_dir,
        per_template=args.per_template,
        target_words=args.target_words,
    )
    print(format_canary(report), end="")


def cmd_serve(args) -> None:
    from .serve import serve

    status = serve(_run_config(args), args.overlay, args.log, port=args.port, host=args.host)
    if status:
        raise CosmoforgeError(f"vllm serve stopped with status {status}; see {args.log}")


def cmd_calibrate(args) -> None:
    from .calibrate import calibrate

    prompt_files = _prompt_files(args.prompts_dirs)
    result = calibrate(prompt_files, args.settings, args.out, prompts=args.prompts)
    print(json.dumps(result, indent=2))


def cmd_status(args) -> None:
    from .status import format_status, run_status

    config = _run_config(args)
    while True:
        status = run_status(config, args.base_dir)
        text = json.dumps(status, indent=2) if args.json else format_status(status)
        if not args.watch:
            print(text)
            return
        # Redraw in place: cursor home, clear the screen.
        print(
            "\x1b[H\x1b[2J" + time.strftime("%H:%M:%S ") + str(args.config) + "\n" + text,
            flush=True,
        )
        time.sleep(args.watch)


def cmd_dedup(args) -> None:
    from . import dedup

    p = args.settings
    if args.stage == "signatures":
        dedup.signatures(args.shard, args.rank, args.tasks, args.out_dir, p, args.logging_dir)
    elif args.stage == "buckets":
        dedup.buckets(args.in_dir, args.rank, args.out_dir, p, args.logging_dir)
    elif args.stage == "cluster":
        dedup.cluster(args.in_dir, args.out_dir, p, args.logging_dir)
    elif args.stage == "filter":
        dedup.filter_shard(
            args.shard,
            args.rank,
            args.tasks,
            args.in_dir,
            args.kept,
            args.removed,
            args.stayed,
            args.logging_dir,
        )


def cmd_dedup_report(args) -> None:
    from .dedup import dedup_report

    dedup_report(args.removed, args.stayed, args.generated, args.settings, args.out, args.report)


def cmd_benchmark_index(args) -> None:
    from .decont import build_index
    from .io import write_json

    s = args.settings
    index, report = build_index(s["benchmarks"], s["ngram"])
    write_json(args.report, report)
    index.save(args.out)


def cmd_decontaminate(args) -> None:
    from .decont import decontaminate_shard

    decontaminate_shard(
        args.shard, args.index, args.threshold, args.out, args.contaminated, args.logging_dir
    )


def cmd_contamination_report(args) -> None:
    from .decont import BENCHMARKS, contamination_report

    s = args.settings
    benchmarks = sorted(s["benchmarks"]) or sorted(BENCHMARKS)
    contamination_report(
        args.contaminated,
        s["groups"],
        benchmarks,
        {"ngram": s["ngram"], "threshold": s["threshold"]},
        args.out_csv,
        args.out_json,
    )


FLAG_VOCABULARY = """\
Flags mean the same in every command:
  --settings JSON   the stage's settings: its config section (or the part of it the rule
                    passes; `snakemake -n -p` prints each job's exact command)
  --out PATH        the stage's one output file
  --out-dir PATH    the stage's output folder
  --report PATH     the stage's own JSON report (an output)
  --stats PATH      the per-shard statistics (an output)
  other inputs are named for what they are: --seeds, --embeddings, --fit-report, --stayed, ...
"""


# The stages of `dedup` and `topics`, each with exactly its own arguments (required where the
# stage needs them), so `topics fit` without `--embeddings` is refused by the parser instead of
# failing deep inside with a traceback.
_REQUIRED_PATH = {"required": True, "type": Path}
_REQUIRED_PATHS = {"required": True, "nargs": "+", "type": Path}
_DEDUP_COMMON = {
    "--settings": {"required": True, "type": _settings("dedup"), "help": "the dedup section"},
    "--logging-dir": _REQUIRED_PATH,
}
DEDUP_STAGES = {
    "signatures": {
        "--shard": {**_REQUIRED_PATH, "help": "the generation shard"},
        "--rank": {"required": True, "type": _count},
        "--tasks": {"required": True, "type": _count},
        "--out-dir": _REQUIRED_PATH,
    },
    "buckets": {
        "--rank": {"required": True, "type": _count},
        "--in-dir": {**_REQUIRED_PATH, "help": "the signatures folder"},
        "--out-dir": _REQUIRED_PATH,
    },
    "cluster": {
        "--in-dir": {**_REQUIRED_PATH, "help": "the buckets folder"},
        "--out-dir": _REQUIRED_PATH,
    },
    "filter": {
        "--shard": {**_REQUIRED_PATH, "help": "the generation shard"},
        "--rank": {"required": True, "type": _count},
        "--tasks": {"required": True, "type": _count},
        "--in-dir": {**_REQUIRED_PATH, "help": "the clusters folder"},
        "--kept": {**_REQUIRED_PATH, "help": "the shard's kept rows (parquet)"},
        "--removed": {**_REQUIRED_PATH, "help": "its removed rows, with the one kept"},
        "--stayed": {**_REQUIRED_PATH, "help": "cluster ids of the kept rows (JSON)"},
    },
}
_TOPICS_COMMON = {
    "--settings": {"required": True, "type": _json, "help": "the stage's topics settings"},
}
TOPIC_STAGES = {
    "embed": {
        "--split": {"required": True, "choices": SPLITS},
        "--seeds": {"required": True, "nargs": 1, "type": Path, "help": "the split's seeds"},
        "--shard": {"required": True, "type": _count},
        "--shards": {"required": True, "type": int},
        "--out": _REQUIRED_PATH,
    },
    "fit": {
        "--embeddings": _REQUIRED_PATHS,
        "--out": {**_REQUIRED_PATH, "help": "centroids.npy"},
        "--fit-report": {**_REQUIRED_PATH, "help": "the fit report to write (JSON)"},
        "--map-sample": {"type": Path, "help": "the 2-D map's sample to write"},
    },
    "assign": {
        "--embeddings": {"required": True, "nargs": 1, "type": Path},
        "--centroids": _REQUIRED_PATH,
        "--out": _REQUIRED_PATH,
    },
    "label": {
        "--assignments": _REQUIRED_PATHS,
        "--split-seeds": {"required": True, "nargs": "+", "metavar": "SPLIT=PATH"},
        "--out": _REQUIRED_PATH,
    },
    "decide": {"--labels": _REQUIRED_PATH, "--out": _REQUIRED_PATH},
    "report": {
        "--decisions": _REQUIRED_PATH,
        "--labels": _REQUIRED_PATH,
        "--assignments": _REQUIRED_PATHS,
        "--map-sample": _REQUIRED_PATH,
        "--centroids": _REQUIRED_PATH,
        "--fit-report": {**_REQUIRED_PATH, "help": "the fit report (JSON) of topics fit"},
        "--out-dir": {**_REQUIRED_PATH, "help": "the report folder"},
    },
}


def _stage_parsers(parser, common: dict, stages: dict, func) -> None:
    sub = parser.add_subparsers(dest="stage", required=True)
    for name, arguments in stages.items():
        p = sub.add_parser(name)
        for flag, spec in {**common, **arguments}.items():
            p.add_argument(flag, **spec)
        p.set_defaults(func=func)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cosmoforge",
        description=__doc__,
        epilog=FLAG_VOCABULARY,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("convert-model", help="convert a GGUF shipped in a package to an HF folder")
    p.add_argument("--package", required=True)
    p.add_argument("--file", required=True)
    p.add_argument("--out", required=True, type=Path)
    p.set_defaults(func=cmd_convert_model)

    p = sub.add_parser("seeds", help="read, validate and normalize a split's seed sources")
    p.add_argument("--split", required=True, choices=SPLITS)
    p.add_argument(
        "--settings",
        required=True,
        type=_settings(
            sources="splits.*.sources",
            on_bad_row="seeds.on_bad_row",
            max_seeds="splits.*.max_seeds",
        ),
        help='JSON: {"sources": [...], "on_bad_row": "skip", "max_seeds": null}',
    )
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--report", required=True, type=Path)
    p.set_defaults(func=cmd_seeds)

    p = sub.add_parser("prompts", help="render a split's prompts, one file per shard")
    p.add_argument("--split", required=True, choices=SPLITS)
    p.add_argument("--seeds", required=True, type=Path, help="the split's seed parquet")
    p.add_argument("--prompts-dir", required=True, type=Path)
    p.add_argument("--topic-assignments", nargs="+", type=Path, help="web splits: clusters")
    p.add_argument("--topic-decisions", type=Path, help="web splits: the decisions file")
    p.add_argument(
        "--settings",
        required=True,
        type=_settings(
            seed="seed",
            shards="splits.*.shards",
            extract_chars="splits.*.extract_chars",
            topic_probability="splits.*.topic_probability",
            templates="splits.*.templates",
        ),
        help='JSON: {"seed", "shards", "extract_chars", "topic_probability", "templates", '
        '"target_words"}',
    )
    p.add_argument(
        "--out-dir", required=True, type=Path, help="<shard>.parquet and .report.json go here"
    )
    p.add_argument("--report", required=True, type=Path, help="the split's report (JSON)")
    p.set_defaults(func=cmd_prompts)

    p = sub.add_parser("generate", help="generate one prompt shard with vLLM (resumable)")
    p.add_argument("--prompts", required=True, type=Path, help="the shard's prompt file")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--stats", required=True, type=Path)
    p.add_argument(
        "--settings",
        required=True,
        type=_settings(seed="seed", model="model", engine="engine", sampling="sampling"),
        help='JSON: {"seed", "model": {...}, "engine": {...}, "sampling": {...}}',
    )
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("release", help="count tokens, filter and write one shard's release file")
    p.add_argument("--split", required=True, choices=SPLITS)
    p.add_argument("--shard", required=True, type=Path, help="the decontaminated shard")
    p.add_argument("--out", required=True, type=Path, help="release/<split>/train-*-of-*.parquet")
    p.add_argument("--stats", required=True, type=Path, help="the shard's statistics (JSON)")
    p.add_argument(
        "--min-token-length", required=True, type=_config_value("release.min_token_length", int)
    )
    p.add_argument("--drop-truncated", action="store_true")
    p.add_argument(
        "--quality", type=_settings("quality"), help="the config's quality section (JSON)"
    )
    p.set_defaults(func=cmd_release)

    p = sub.add_parser(
        "finish-shard",
        help="one shard after the dedup barrier: dedup filter, decontaminate, release, in one job",
    )
    p.add_argument("--split", required=True, choices=SPLITS)
    p.add_argument("--generated", required=True, type=Path, help="the generation shard")
    p.add_argument("--rank", required=True, type=_count, help="its dedup rank")
    p.add_argument("--tasks", required=True, type=_count, help="dedup ranks in the run")
    p.add_argument("--clusters", required=True, type=Path, help="dedup/clusters folder")
    p.add_argument("--index", required=True, type=Path, help="the benchmark n-gram index")
    p.add_argument(
        "--threshold", required=True, type=_config_value("decontamination.threshold", float)
    )
    p.add_argument(
        "--min-token-length", required=True, type=_config_value("release.min_token_length", int)
    )
    p.add_argument("--drop-truncated", action="store_true")
    p.add_argument(
        "--quality", type=_settings("quality"), help="the config's quality section (JSON)"
    )
    for name, what in (
        ("deduped", "the shard after dedup"),
        ("removed", "its near-duplicates"),
        ("stayed", "JSON: which document stayed in each duplicate cluster"),
        ("clean", "the shard after decontamination"),
        ("contaminated", "its contaminated rows with their matches"),
        ("release", "release/<split>/train-*-of-*.parquet"),
        ("stats", "the release file's statistics (JSON)"),
        ("left-out", "the rows the release step left out, with the reason (parquet)"),
    ):
        p.add_argument(f"--{name}", required=True, type=Path, help=what)
    p.add_argument("--logging-dir", required=True, type=Path)
    p.set_defaults(func=cmd_finish_shard)

    p = sub.add_parser("card", help="write the dataset card, statistics and plots")
    p.add_argument(
        "--release-stats", required=True, nargs="+", type=Path, help="every shard's statistics"
    )
    p.add_argument("--seed-reports", required=True, nargs="+", type=Path)
    p.add_argument("--generation-stats", required=True, nargs="+", type=Path)
    p.add_argument("--settings", required=True, type=_json)
    p.add_argument("--dedup-report", type=Path)
    p.add_argument("--contamination", type=Path)
    p.add_argument("--benchmarks", type=Path)
    p.add_argument("--topics-report", type=Path, help="topics/report/report.json")
    p.add_argument("--ledger", type=Path, help="ledger.parquet: the fate of every prompt")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--stats", required=True, type=Path)
    p.set_defaults(func=cmd_card)
    p = sub.add_parser("dedup", help="one datatrove MinHash stage, one rank")
    _stage_parsers(p, _DEDUP_COMMON, DEDUP_STAGES, cmd_dedup)

    p = sub.add_parser("dedup-report", help="removed documents with the one kept; rates")
    p.add_argument("--removed", required=True, nargs="+", type=Path)
    p.add_argument("--stayed", required=True, nargs="+", type=Path, help="dedup/stayed/*.json")
    p.add_argument("--generated", required=True, nargs="+", type=Path)
    p.add_argument("--settings", required=True, type=_settings("dedup"))
    p.add_argument("--out", required=True, type=Path, help="removed.parquet")
    p.add_argument("--report", required=True, type=Path, help="report.json")
    p.set_defaults(func=cmd_dedup_report)

    p = sub.add_parser("benchmark-index", help="n-gram index of the benchmark items")
    p.add_argument(
        "--settings",
        required=True,
        type=_settings("decontamination"),
        help="the decontamination section",
    )
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--report", required=True, type=Path)
    p.set_defaults(func=cmd_benchmark_index)

    p = sub.add_parser("decontaminate", help="drop documents contaminated by benchmark items")
    p.add_argument("--shard", required=True, type=Path)
    p.add_argument("--index", required=True, type=Path)
    p.add_argument(
        "--threshold", required=True, type=_config_value("decontamination.threshold", float)
    )
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--contaminated", required=True, type=Path)
    p.add_argument("--logging-dir", required=True, type=Path)
    p.set_defaults(func=cmd_decontaminate)

    p = sub.add_parser("contamination-report", help="the contamination table")
    p.add_argument("--contaminated", required=True, nargs="+", type=Path)
    p.add_argument("--settings", required=True, type=_json)
    p.add_argument("--out-csv", required=True, type=Path)
    p.add_argument("--out-json", required=True, type=Path)
    p.set_defaults(func=cmd_contamination_report)

    p = sub.add_parser("topics", help="topic clustering of web seeds, one stage")
    _stage_parsers(p, _TOPICS_COMMON, TOPIC_STAGES, cmd_topics)

    p = sub.add_parser(
        "check",
        help="validate a config and check that its seed, template and benchmark files exist",
    )
    p.add_argument("--config", required=True, type=Path)
    p.add_argument("--base-dir", default=".", type=Path, help="where relative paths start")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("ledger", help="one row per prompt with its final fate (ledger.parquet)")
    p.add_argument("--settings", required=True, type=_json, help="the whole config (JSON)")
    p.add_argument("--stayed", nargs="*", default=[], type=Path, help="dedup/stayed/*.json")
    p.add_argument("--out", required=True, type=Path)
    p.set_defaults(func=cmd_ledger)

    p = sub.add_parser("explain", help="prompt, text, provenance and fate of one sample")
    p.add_argument("sample_id")
    p.add_argument("--config", default="config/config.yaml", type=Path)
    p.add_argument("--run-name")
    p.add_argument("--base-dir", default=".", type=Path)
    p.set_defaults(func=cmd_explain)

    p = sub.add_parser(
        "canary", help="a few prompts per template through the model, with a quality verdict"
    )
    _probe_arguments(p)
    p.add_argument("--quality", required=True, type=_settings("quality"))
    p.add_argument(
        "--min-token-length", required=True, type=_config_value("release.min_token_length", int)
    )
    p.add_argument("--target-words", type=_json, help='JSON: {"split": words asked for}')
    p.add_argument("--per-template", type=int, default=3)
    p.add_argument("--out-dir", required=True, type=Path, help="results/<run>/canary")
    p.set_defaults(func=cmd_canary)

    p = sub.add_parser(
        "calibrate", help="measure tok/s and tokens per prompt on a probe of the run's prompts"
    )
    _probe_arguments(p)
    p.add_argument("--prompts", type=int, default=256, help="probe size (all splits together)")
    p.add_argument("--out", required=True, type=Path, help="results/<run>/calibration.json")
    p.set_defaults(func=cmd_calibrate)

    p = sub.add_parser(
        "serve",
        help="run vllm serve with the run's model for engine.backend openai (a job of its own)",
        description=(
            "Starts vllm serve with the config's model and engine settings, waits until it "
            "answers, then writes OVERLAY (engine.backend: openai, base_url on this node) and "
            "runs until stopped. Run the workflow with --configfile CONFIG OVERLAY. On Slurm: "
            "sbatch --gpus=N --wrap 'srun python -m cosmoforge serve --config CONFIG --overlay "
            "results/server.yaml --log logs/serve.log'."
        ),
    )
    p.add_argument("--config", default="config/config.yaml", type=Path)
    p.add_argument("--run-name")
    p.add_argument("--overlay", required=True, type=Path, help="config overlay written when up")
    p.add_argument("--log", required=True, type=Path, help="the server's own output")
    p.add_argument("--port", type=int, help="default: a free port")
    p.add_argument("--host", help="address the clients use (default: this node's name)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser(
        "status", help="progress of a run from its files: shards, rows, tok/s, ETA, GPU-hours"
    )
    p.add_argument("--config", default="config/config.yaml", type=Path)
    p.add_argument("--base-dir", default=".", type=Path, help="where results/ is")
    p.add_argument("--run-name")
    p.add_argument("--json", action="store_true")
    p.add_argument("--watch", type=float, metavar="SECONDS", help="refresh every SECONDS")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("plan", help="jobs, prompts, tokens and GPU-hours of a config")
    p.add_argument("--config", default="config/config.yaml", type=Path)
    p.add_argument("--base-dir", default=".", type=Path, help="where relative paths start")
    p.add_argument("--run-name")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_plan)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        args.func(args)
    except CosmoforgeError as exc:
        print(f"cosmoforge {args.command}: error: {exc}", file=sys.stderr)
        return getattr(exc, "exit_code", 2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
