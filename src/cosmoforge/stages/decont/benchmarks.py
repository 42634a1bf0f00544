"""The benchmarks: one text builder per benchmark (hub layouts and field names), and loading
their files."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cosmoforge.core.errors import BenchmarkError
from cosmoforge.core.io import load_hub_dataset
from cosmoforge.stages.decont.ngrams import normalize_tokens


@dataclass(frozen=True)
class BenchmarkItem:
    benchmark: str
    item_id: str
    text: str


# ---------------------------------------------------------------------------------------------
# Benchmark text builders: one per benchmark, reading the hub layouts and field names.
# ---------------------------------------------------------------------------------------------


def _choices_text(choices) -> list[str]:
    if isinstance(choices, dict):  # ARC / OpenBookQA: {"text": [...], "label": [...]}
        choices = choices.get("text")
    if not isinstance(choices, list) or not all(isinstance(c, str) for c in choices):
        raise ValueError("choices must be a list of strings or {text: [...]}")
    return choices


def _join(*parts: str) -> str:
    return " ".join(p.strip() for p in parts if p and p.strip())


def build_mmlu(row):
    return [_join(row["question"], *_choices_text(row["choices"]))]


def build_hellaswag(row):
    context = row.get("ctx") or _join(row.get("ctx_a", ""), row.get("ctx_b", ""))
    return [_join(context, *_choices_text(row["endings"]))]


def build_piqa(row):
    return [_join(row["goal"], row["sol1"], row["sol2"])]


def build_siqa(row):
    return [_join(row["context"], row["question"], row["answerA"], row["answerB"], row["answerC"])]


def build_winogrande(row):
    # One text per option filled into the blank: a document containing either reads as a copy.
    return [row["sentence"].replace("_", row[key], 1) for key in ("option1", "option2")]


def build_openbookqa(row):
    return [_join(row["question_stem"], *_choices_text(row["choices"]))]


def build_arc(row):
    return [_join(row["question"], *_choices_text(row["choices"]))]


def build_boolq(row):
    return [_join(row["passage"], row["question"])]


@dataclass(frozen=True)
class BenchmarkSpec:
    builder: object
    fields: tuple[str, ...]
    id_field: str | None
    hub: tuple[str, str | None, str]  # load_dataset name, config, split
    doc: str


BENCHMARKS: dict[str, BenchmarkSpec] = {
    "mmlu": BenchmarkSpec(
        build_mmlu,
        ("question", "choices"),
        None,
        ("cais/mmlu", "all", "test"),
        "test split; question + each choice",
    ),
    "hellaswag": BenchmarkSpec(
        build_hellaswag,
        ("endings",),
        "ind",
        ("Rowan/hellaswag", None, "validation"),
        "validation split; ctx (or ctx_a + ctx_b) + each ending",
    ),
    "piqa": BenchmarkSpec(
        build_piqa,
        ("goal", "sol1", "sol2"),
        None,
        ("ybisk/piqa", None, "validation"),
        "validation split; goal + sol1 + sol2",
    ),
    "siqa": BenchmarkSpec(
        build_siqa,
        ("context", "question", "answerA", "answerB", "answerC"),
        None,
        ("allenai/social_i_qa", None, "validation"),
        "validation split; context + question + answerA/B/C",
    ),
    "winogrande": BenchmarkSpec(
        build_winogrande,
        ("sentence", "option1", "option2"),
        None,
        ("allenai/winogrande", "winogrande_xl", "validation"),
        "validation split (winogrande_xl); sentence with option1, and "
        "with option2, filled in (two texts, one item)",
    ),
    "openbookqa": BenchmarkSpec(
        build_openbookqa,
        ("question_stem", "choices"),
        "id",
        ("allenai/openbookqa", "main", "test"),
        "test split (main); question_stem + each choice",
    ),
    "arc_easy": BenchmarkSpec(
        build_arc,
        ("question", "choices"),
        "id",
        ("allenai/ai2_arc", "ARC-Easy", "test"),
        "test split; question + each choice",
    ),
    "arc_challenge": BenchmarkSpec(
        build_arc,
        ("question", "choices"),
        "id",
        ("allenai/ai2_arc", "ARC-Challenge", "test"),
        "test split; question + each choice",
    ),
    "boolq": BenchmarkSpec(
        build_boolq,
        ("question", "passage"),
        None,
        ("google/boolq", None, "validation"),
        "validation split; passage + question",
    ),
}


def _read_rows(path: Path) -> Iterator[tuple[int, object]]:
    if not path.is_file():
        raise BenchmarkError(f"{path}: benchmark file not found")
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path)
        except Exception as exc:  # noqa: BLE001 - any unreadable parquet
            raise BenchmarkError(f"{path}: not a readable parquet file ({exc})") from exc
        yield from enumerate(table.to_pylist(), start=1)
        return
    with open(path, "rb") as fh:
        for line_no, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            try:
                yield line_no, json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise BenchmarkError(
                    f"{path}: row {line_no}: not valid UTF-8 JSON ({exc})"
                ) from exc


def load_benchmark(name: str, source: dict) -> tuple[list[BenchmarkItem], int]:
    """Items of one benchmark from a local file (parquet/jsonl) or the hub; and rows skipped.

    A missing field stops with an error naming file, row and field; an empty row is skipped
    and counted.
    """
    if name not in BENCHMARKS:
        raise BenchmarkError(f"unknown benchmark '{name}'; known: {sorted(BENCHMARKS)}")
    spec = BENCHMARKS[name]
    if "path" in source:
        where = source["path"]
        rows = _read_rows(Path(source["path"]))
    else:
        hub_name, config, split = spec.hub
        where = f"hf:{hub_name}"
        dataset = load_hub_dataset(
            BenchmarkError,
            where,
            f"decontamination.benchmarks.{name}.path",
            hub_name,
            config,
            split=split,
        )
        rows = enumerate(dataset, start=1)
    items, skipped = [], 0
    for row_no, row in rows:
        if not isinstance(row, dict):
            raise BenchmarkError(f"{where}: row {row_no}: not an object")
        for field_name in spec.fields:
            if field_name not in row or row[field_name] is None:
                raise BenchmarkError(f"{where}: row {row_no}: field '{field_name}' is missing")
        try:
            texts = spec.builder(row)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise BenchmarkError(f"{where}: row {row_no}: {exc}") from exc
        texts = [t for t in texts if normalize_tokens(t)]
        if not texts:
            skipped += 1
            continue
        item_id = (
            str(row.get(spec.id_field)) if spec.id_field and row.get(spec.id_field) else str(row_no)
        )
        items += [BenchmarkItem(name, f"{name}:{item_id}", t) for t in texts]
    if not items:
        # An empty file would silently decontaminate against nothing.
        raise BenchmarkError(
            f"{where}: no benchmark items ({skipped} row(s) without text); fix the file, or "
            f"remove '{name}' from decontamination.benchmarks to leave it out"
        )
    return items, skipped
