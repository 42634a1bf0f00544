"""topics label: one prompt per cluster through the generation engine, the answer parsed
strictly."""

from __future__ import annotations

import logging
import random
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import jinja2
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from cosmoforge.core.contracts import ROUTES, clip
from cosmoforge.core.errors import TemplateError, yaml_error_line
from cosmoforge.core.io import derive_seed, write_parquet
from cosmoforge.core.settings import TopicLabelSettings
from cosmoforge.engines import ENGINES, Request
from cosmoforge.stages.topics.common import LABEL_SCHEMA, PLACEHOLDER_TOPICS
from cosmoforge.stages.topics.kmeans import read_assignments

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LabelTemplate:
    path: str
    version: int
    body: str
    answer_pattern: str

    @property
    def structured_regex(self) -> str:
        """The answer pattern for vLLM's structured outputs: no anchors or named groups."""
        pattern = re.sub(r"\(\?P<\w+>", "(", self.answer_pattern)
        return pattern.removeprefix("^").removesuffix("$")

    def render(self, examples: list[str]) -> str:
        env = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False)
        try:
            return env.from_string(self.body).render(examples=examples).strip()
        except jinja2.UndefinedError as exc:
            raise TemplateError(f"{self.path}: {exc.message}") from exc


def load_label_template(path: str | Path) -> LabelTemplate:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise TemplateError(yaml_error_line(path, exc)) from exc
    except OSError as exc:
        raise TemplateError(f"{path}: cannot read the label template: {exc}") from exc
    required = {"version", "template", "answer_pattern"}
    if not isinstance(data, dict) or required - data.keys():
        raise TemplateError(f"{path}: a label template needs the keys {sorted(required)}")
    try:
        groups = set(re.compile(data["answer_pattern"]).groupindex)
    except re.error as exc:
        raise TemplateError(f"{path}: field 'answer_pattern' is not a regex: {exc}") from exc
    if groups != {"topic", "score", "route"}:
        raise TemplateError(
            f"{path}: field 'answer_pattern' must have the named groups topic, score and route "
            f"(has {sorted(groups)})"
        )
    try:
        jinja2.Environment().parse(data["template"])
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"{path}: field 'template', line {exc.lineno}: {exc.message}") from exc
    return LabelTemplate(str(path), int(data["version"]), data["template"], data["answer_pattern"])


@dataclass(frozen=True)
class Label:
    topic: str
    score: int
    route: str


def parse_label(answer: str, template: LabelTemplate) -> Label:
    """The topic, 1-10 score and route of an answer, or ValueError. Nothing is guessed."""
    match = re.fullmatch(template.answer_pattern, answer.strip())
    if match is None:
        raise ValueError("answer does not match the template's answer_pattern")
    topic = " ".join(match["topic"].split()).strip(" .,:;\"'")
    if not re.search(r"[A-Za-z]", topic) or topic.lower() in PLACEHOLDER_TOPICS:
        raise ValueError(f"no topic named (got {match['topic']!r})")
    score = int(match["score"])
    if not 1 <= score <= 10:
        raise ValueError(f"score {score} is outside 1-10")
    route = match["route"].strip().lower().replace(" ", "")
    if route not in ROUTES:
        raise ValueError(f"route {match['route']!r} is not one of {ROUTES}")
    return Label(topic, score, route)


def cluster_examples(
    assignments: pa.Table, seeds_paths: dict[str, str | Path], settings: TopicLabelSettings
) -> dict[int, tuple[list[str], list[str]]]:
    """Per cluster: ids and extracts of up to N members, drawn without replacement with a seed
    derived from the cluster id (Cosmopedia drew 10 with replacement, unseeded). Only the
    drawn members' texts are read from the seed files."""
    members: dict[int, list[tuple[str, str]]] = {}
    for split, seed_id, cluster in zip(
        assignments.column("split").to_pylist(),
        assignments.column("seed_id").to_pylist(),
        assignments.column("cluster").to_pylist(),
        strict=True,
    ):
        members.setdefault(cluster, []).append((split, seed_id))
    picks = {}
    for cluster, keys in members.items():
        keys.sort()
        rng = random.Random(derive_seed(settings.seed, "topics", "examples", cluster))
        picks[cluster] = rng.sample(keys, min(settings.examples_per_cluster, len(keys)))
    wanted: dict[str, set[str]] = {}
    for keys in picks.values():
        for split, seed_id in keys:
            wanted.setdefault(split, set()).add(seed_id)
    texts = {}
    for split, ids in wanted.items():
        table = pq.read_table(
            seeds_paths[split], columns=["seed_id", "text"], filters=[("seed_id", "in", ids)]
        )
        for seed_id, text in zip(
            table.column("seed_id").to_pylist(), table.column("text").to_pylist(), strict=True
        ):
            texts[(split, seed_id)] = text
    return {
        cluster: (
            [f"{s}/{i}" for s, i in keys],
            [clip(texts[(s, i)], settings.example_chars) for s, i in keys],
        )
        for cluster, keys in picks.items()
    }


def _label_row(cluster, labels, errors, answers, examples, sizes, asked: bool) -> dict:
    """The labels table's row of one cluster: its label, or why it has none."""
    label = labels.get(cluster)
    error = None
    if label is None:
        error = (
            f"{errors.get(cluster, 'no answer')} (after {len(answers[cluster])} attempts)"
            if asked
            else "no members"
        )
        log.error("cluster %d: no label: %s", cluster, error)
    ids, texts = examples.get(cluster, ([], []))
    return {
        "cluster": cluster,
        "size": sizes.get(cluster, 0),
        "topic": label.topic if label else None,
        "score": label.score if label else None,
        "route": label.route if label else None,
        "attempts": len(answers.get(cluster, [])),
        "error": error,
        "answers": answers.get(cluster, []),
        "examples": texts,
        "example_ids": ids,
    }


def label_clusters(
    assignment_paths: list[str | Path],
    seeds_paths: dict[str, str | Path],
    k: int,
    settings: TopicLabelSettings | dict,
    output: str | Path,
    engine_factory: Callable | None = None,
) -> pa.Table:
    """One request per cluster; unparsable answers are retried (new seed), then reported."""
    settings = TopicLabelSettings.of(settings)
    template = load_label_template(settings.template)
    assignments = read_assignments(assignment_paths)
    sizes = Counter(assignments.column("cluster").to_pylist())
    examples = cluster_examples(assignments, seeds_paths, settings)
    prompts = {c: template.render(examples[c][1]) for c in sorted(examples)}
    engine_cfg = settings.engine
    sampling = settings.sampling
    factory = engine_factory or ENGINES[engine_cfg["backend"]]
    regex = template.structured_regex if settings.structured else None
    answers: dict[int, list[str]] = {c: [] for c in prompts}
    labels: dict[int, Label] = {}
    errors: dict[int, str] = {}
    todo = sorted(prompts)
    engine = factory(settings.model, engine_cfg, sampling) if todo else None
    for attempt in range(settings.max_attempts):
        if not todo:
            break
        requests = [
            Request(
                f"cluster-{c}-attempt-{attempt}",
                prompts[c],
                derive_seed(settings.seed, "topics", "label", c, attempt),
                regex=regex,
            )
            for c in todo
        ]
        for completion in engine.run(requests):
            cluster = int(completion.sample_id.split("-")[1])
            answers[cluster].append(completion.text)
            if completion.error:
                errors[cluster] = f"engine error: {completion.error}"
                continue
            try:
                labels[cluster] = parse_label(completion.text, template)
                errors.pop(cluster, None)
            except ValueError as exc:
                errors[cluster] = f"unparsable answer ({exc}): {completion.text[:200]!r}"
        todo = [c for c in todo if c not in labels]
        if todo:
            log.warning(
                "attempt %d: %d cluster(s) without a label: %s", attempt + 1, len(todo), todo
            )
    rows = [
        _label_row(cluster, labels, errors, answers, examples, sizes, asked=cluster in prompts)
        for cluster in range(k)
    ]
    table = pa.Table.from_pylist(rows, schema=LABEL_SCHEMA)
    write_parquet(output, table)
    return table
