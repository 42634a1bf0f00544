import re

import pyarrow as pa
import pytest

from cosmoforge import SPLITS
from cosmoforge.core.contracts import KINDS
from cosmoforge.core.errors import TemplateError
from cosmoforge.stages.prompts import build_prompt_rows
from cosmoforge.stages.seeds import BASE_COLUMNS
from cosmoforge.stages.templates import load_template, load_templates

# One fixture seed per kind, every optional field filled, so every template branch renders.
FIXTURES = {
    "web": {"text": "Tides rise and fall twice a day.", "topic": "Oceanography", "url": "u"},
    "auto_math_text": {"text": "Let x = 2. Then x^2 = 4.", "url": "u"},
    "stanford": {
        "course_title": "Physics",
        "course_description": "Motion.",
        "section_title": "Kinematics",
        "unit_title": "Velocity",
    },
    "ultrachat": {"question": "Why do cats purr?"},
    "openhermes": {"instruction": "Add 2 and 3.", "answer": "5"},
    "wikihow": {"title": "How to Tie a Tie"},
    "openstax": {
        "book_title": "Chemistry",
        "chapter_title": "Atoms",
        "section_title": "Nuclei",
        "unit_title": "Isotopes",
        "text": "Isotopes differ in neutrons.",
    },
    "khanacademy": {
        "course_title": "Algebra",
        "unit_title": "Lines",
        "lesson_title": "Slope",
        "lesson_outline": "rise over run",
    },
}
SPLIT_KINDS = {
    "web_samples_v1": ["web"],
    "web_samples_v2": ["web"],
    "auto_math_text": ["auto_math_text"],
    "stanford": ["stanford"],
    "stories": ["ultrachat", "openhermes"],
    "wikihow": ["wikihow"],
    "openstax": ["openstax"],
    "khanacademy": ["khanacademy"],
}
LEFTOVER = re.compile(r"\{\{|\}\}|\{%|%\}|<INSERT|<ADD_TOPIC>|<EXTRACT>|\$\{")


def seed_table(kinds, count=2, mutate=None):
    columns = list(BASE_COLUMNS)
    for kind in kinds:
        for name in KINDS[kind][0] + KINDS[kind][1]:
            if name not in columns and name != "id":
                columns.append(name)
    rows = []
    for kind in kinds:
        for i in range(count):
            row = dict.fromkeys(columns)
            row.update(FIXTURES[kind])
            if mutate:
                row.update(mutate(kind, i))
            row.update(seed_id=f"{kind}:{i}", source=kind, kind=kind, row=i + 1)
            if kind in ("openstax", "khanacademy"):
                row.update(unit_title=f"Unit {i}") if kind == "openstax" else row.update(
                    lesson_title=f"Lesson {i}"
                )
            rows.append(row)
    schema = pa.schema([(c, pa.int64() if c == "row" else pa.string()) for c in columns])
    return pa.Table.from_pylist(rows, schema=schema)


@pytest.mark.parametrize("split", SPLITS)
def test_every_template_renders_without_leftover_placeholders(repo, split):
    templates = load_templates(repo / "prompts", split)
    rows = build_prompt_rows(split, seed_table(SPLIT_KINDS[split]), templates, seed=1, shards=1)
    used = {r["template_id"] for r in rows}
    assert used == {t.template_id for t in templates}, "a template never applied to its kind"
    for row in rows:
        assert row["prompt"].strip()
        assert not LEFTOVER.search(row["prompt"]), (row["template_id"], row["prompt"])
        assert row["format"] and row["audience"]


@pytest.mark.parametrize("split", SPLITS)
def test_fast_render_equals_jinjas_own_render(repo, split):
    """Template.render skips Jinja's per-call context set-up; the text must not change."""
    from cosmoforge.stages.prompts import _variants
    from cosmoforge.stages.templates import _ENV

    options = {"seed": 1, "extract_chars": 1000, "topic_probability": 0.5, "target_words": 300}
    options["openstax_reference_chars"] = 600
    context = {"previous": {}}
    seeds = seed_table(SPLIT_KINDS[split]).to_pylist()
    context["previous"] = {s["seed_id"]: ["Earlier", 'A "quoted" one'] for s in seeds}
    rendered = 0
    for template in load_templates(repo / "prompts", split):
        reference = _ENV.from_string(template.body)
        for seed in seeds:
            if seed["kind"] not in template.kinds:
                continue
            for _, variables in _variants(split, seed, template, options, context, "id"):
                for values in (variables, {**variables, "topic": ""}):
                    values = {k: v for k, v in values.items() if k in variables}
                    expected = reference.render(**values).strip()
                    assert template.render(**values) == expected, template.path
                    rendered += 1
    assert rendered >= 2


def test_template_counts_cover_the_original_variants(repo):
    count = {s: len(load_templates(repo / "prompts", s)) for s in SPLITS}
    assert count["web_samples_v1"] == count["web_samples_v2"] == 4
    assert count["auto_math_text"] == 2
    assert count["openstax"] == 4  # x with/without reference = 8 variants
    assert count["stories"] == 8  # 5 UltraChat + 3 OpenHermes
    assert count["stanford"] >= 4
    assert count["wikihow"] >= 1 and count["khanacademy"] >= 1


def test_seed_text_with_template_syntax_comes_out_verbatim(repo):
    nasty = 'Use {{ name }} and {% if x %}, or ${VAR} and <INSERT_EXTRACT> {"a": 1} \\{ }'
    templates = load_templates(repo / "prompts", "web_samples_v1")
    table = seed_table(["web"], count=1, mutate=lambda k, i: {"text": nasty, "topic": "{{ t }}"})
    rows = build_prompt_rows("web_samples_v1", table, templates, seed=1, shards=1)
    for row in rows:
        assert f'"{nasty}"' in row["prompt"]
        assert '"{{ t }}"' in row["prompt"]  # v1 always names the topic, literally


def test_template_file_errors_name_the_file_and_field(tmp_path):
    folder = tmp_path / "web_samples_v1"
    folder.mkdir()
    bad = folder / "broken.yaml"
    bad.write_text("format: x\naudience: y\nversion: 1\nkinds: [web]\ntemplate: '{% if %}'\n")
    with pytest.raises(TemplateError, match=r"broken.yaml: field 'template', line 1"):
        load_template(bad, "web_samples_v1")
    bad.write_text("format: x\nversion: 1\nkinds: [web]\ntemplate: hi\n")
    with pytest.raises(TemplateError, match=r"broken.yaml: missing key\(s\) \['audience'\]"):
        load_template(bad, "web_samples_v1")
    bad.write_text("format: x\naudience: y\nversion: 1\nkinds: [tweets]\ntemplate: hi\n")
    with pytest.raises(TemplateError, match="field 'kinds'"):
        load_template(bad, "web_samples_v1")
    bad.write_text("format: x\naudience: y\nversion: 1\nkinds: [web]\ntemplate: '{{ typo }}'\n")
    template = load_template(bad, "web_samples_v1")
    with pytest.raises(TemplateError, match="'typo' is undefined"):
        template.render(extract="e", topic="")
    with pytest.raises(TemplateError, match="unknown template"):
        load_templates(tmp_path, "web_samples_v1", ["nope"])


def all_templates(repo):
    return [t for split in SPLITS for t in load_templates(repo / "prompts", split)]


def test_templates_use_one_documented_vocabulary_of_formats_and_audiences(repo):
    readme = (repo / "prompts" / "README.md").read_text()
    tables = re.findall(r"^\| `(\w+)` \|", readme, flags=re.M)
    for template in all_templates(repo):
        assert template.format in tables, (template.path, template.format)
        assert template.audience in tables, (template.path, template.audience)


def test_no_phrase_of_the_original_cosmopedia_prompts_is_left(repo):
    # Fragments (well under a dozen words) of the sentences that used to match the original
    # prompts word for word: the web opening, the v2 blog post opening, the stories' openers.
    gone = [
        "extract from a webpage",
        "informative and insightful blog post",
        "hung low in the sky",
        "A few years back",
        "expands upon",
    ]
    for template in all_templates(repo):
        for fragment in gone:
            assert fragment.lower() not in template.body.lower(), (template.path, fragment)


def stock_openings(template) -> set[str]:
    sentence = re.search(r"worn-out opening such as (.+?); go straight", template.body)
    assert sentence, template.path
    return set(re.findall(r'"([^"]+)"', sentence.group(1)))


def test_each_story_style_warns_off_its_own_stock_openings(repo):
    stories = {t.name: t for t in load_templates(repo / "prompts", "stories")}
    openings = {name: stock_openings(t) for name, t in stories.items()}
    children = (
        openings["ultrachat_young_children_story"] | openings["openhermes_young_children_story"]
    )
    adult_fiction = openings["ultrachat_morality_story"]
    posts = openings["ultrachat_forum_story"] | openings["ultrachat_reddit_post"]
    assert children and adult_fiction and posts
    assert not children & adult_fiction and not children & posts and not adult_fiction & posts
    assert "Once upon a time" in children


def test_prompts_ask_for_a_length_sized_to_max_tokens(repo, default_config):
    from cosmoforge.core.contracts import target_words
    from cosmoforge.core.layout import Layout

    assert target_words(192) == 110 and target_words(2500) == 1500
    words = Layout(default_config).prompts_settings("stories").target_words
    assert words == target_words(default_config["sampling"]["max_tokens"])
    templates = load_templates(repo / "prompts", "stories")
    rows = build_prompt_rows(
        "stories",
        seed_table(["ultrachat", "openhermes"]),
        templates,
        seed=1,
        shards=1,
        target_words=words,
    )
    assert rows and all(f"Aim for about {words} words." in r["prompt"] for r in rows)


@pytest.mark.parametrize("split", SPLITS)
def test_no_double_full_stop_after_a_quoted_extract(repo, split):
    templates = load_templates(repo / "prompts", split)
    mutate = lambda kind, i: {k: "It ends with a full stop." for k in ("text", "question")}  # noqa: E731
    rows = build_prompt_rows(
        split, seed_table(SPLIT_KINDS[split], mutate=mutate), templates, seed=1, shards=1
    )
    assert rows and not any('.".' in r["prompt"] for r in rows)


def test_textbook_templates_ask_for_no_title(repo):
    for template in all_templates(repo):
        if template.format == "textbook":
            assert "no title" in template.body, template.path


def test_extracts_end_at_a_word_boundary():
    from cosmoforge.core.contracts import extract

    assert extract("  alpha beta gamma delta  ", 100) == "alpha beta gamma delta"
    words = " ".join(["alpha"] * 300)
    cut = extract(words, 1003)
    assert cut == words[:1001].rstrip() and cut.endswith("alpha")  # not "... alpha alp"
    assert extract("x" * 50, 10) == "x" * 10  # no space at all: a hard cut
    assert extract("alpha\n" + "b" * 1000, 1000) == ("alpha\n" + "b" * 1000)[:1000]  # too far back


def test_extracts_end_at_a_sentence_end_near_the_limit():
    from cosmoforge.core.contracts import extract

    text = "Rivers carry silt. Deltas grow where it settles! Do they? " * 40
    cut = extract(text, 1000)
    assert cut.endswith(("silt.", "settles!", "they?")) and 600 <= len(cut) <= 1000
    assert text.startswith(cut)
    # closing quotes and brackets stay with their sentence
    quoted = 'A first sentence that is long enough here. She said "stop." and then more words'
    assert extract(quoted, 70) == 'A first sentence that is long enough here. She said "stop."'
    # a paragraph break ends a heading that has no full stop
    assert extract("Heading without stop\n\n" + "word " * 20, 25) == "Heading without stop"
    # no sentence end in the last 40%: the last word boundary
    assert extract("One. " + "word " * 100, 100) == ("One. " + "word " * 100)[:100].rstrip()


def test_an_extract_never_ends_inside_a_tag_an_entity_or_an_escape():
    from cosmoforge.core.contracts import extract

    assert extract("a" * 95 + "&amp;b", 99) == "a" * 95
    assert extract("a" * 94 + "&#8217;", 99) == "a" * 94
    assert extract("a" * 90 + " b <em class='x'>c</em>", 99) == "a" * 90 + " b"
    assert extract("x" * 95 + "\\u00e9abc", 99) == "x" * 95
    assert extract("x" * 98 + "\\nabc", 99) == "x" * 98
    # a complete entity or a plain "<" is no reason to move the cut
    assert extract("a" * 90 + " &amp; b c d e f", 99) == "a" * 90 + " &amp; b"
    assert extract("x < y and " * 20, 99) == ("x < y and " * 10)[:95]  # "<" is no tag


def test_a_template_without_text_is_refused_when_loaded(tmp_path):
    folder = tmp_path / "wikihow"
    folder.mkdir()
    head = "format: wikihow\naudience: general\nversion: 1\nkinds: [wikihow]\n"
    bad = folder / "empty.yaml"
    for body in ("template: ''\n", "template: '   '\n", "template:\n"):
        bad.write_text(head + body)
        with pytest.raises(TemplateError, match=r"empty.yaml: field 'template' is empty"):
            load_template(bad, "wikihow")
    bad.write_bytes(head.encode() + "template: caf\xe9\n".encode("latin-1"))
    with pytest.raises(TemplateError, match=r"empty.yaml: not UTF-8 text"):
        load_template(bad, "wikihow")


def test_a_prompt_that_renders_empty_names_its_template(tmp_path):
    folder = tmp_path / "wikihow"
    folder.mkdir()
    path = folder / "only_title.yaml"
    path.write_text(
        "format: wikihow\naudience: general\nversion: 1\nkinds: [wikihow]\n"
        "template: '{{ title }}'\n"
    )
    template = load_template(path, "wikihow")
    assert template.render(title="How to knit") == "How to knit"
    with pytest.raises(TemplateError, match=r"only_title.yaml: renders an empty prompt"):
        template.render(title="  ")


def test_templates_saved_as_yml_are_named_in_the_message(tmp_path):
    folder = tmp_path / "wikihow"
    folder.mkdir()
    (folder / "article.yml").write_text("format: x\n")
    with pytest.raises(TemplateError, match=r"no templates \(article.yml: templates end in .yaml"):
        load_templates(tmp_path, "wikihow")
