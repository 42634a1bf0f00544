import json

from cosmoforge.engines import Completion, FakeEngine
from cosmoforge.ops.canary import run_canary, verdict
from cosmoforge.stages.quality import default_quality
from tests.helpers import SETTINGS


class OnceUponATime(FakeEngine):
    """Every story opens with a stock line; every third text is a loop."""

    def run(self, requests):
        for n, c in enumerate(super().run(requests)):
            text = "Once upon a time, " + c.text
            if n % 3 == 0:
                text = "The same line again. " * 30
            yield Completion(
                c.sample_id, text, c.finish_reason, c.prompt_tokens, c.completion_tokens
            )


def test_canary_reports_flags_and_a_verdict_per_template(prompt_files, tmp_path):  # noqa: F811
    report = run_canary(
        prompt_files,
        SETTINGS,
        default_quality(),
        5,
        tmp_path / "canary",
        per_template=2,
        engine_factory=OnceUponATime,
    )
    templates = report["per_template"]
    assert len(templates) == 8 + 4  # every stories and openstax template, 2 prompts each
    assert all(t["texts"] == 2 for t in templates.values())
    assert sum(t["boilerplate_opening"] for t in templates.values()) >= 12
    assert all(t["verdict"].startswith("WARN") for t in templates.values())
    assert json.loads((tmp_path / "canary" / "report.json").read_text()) == report
    assert "boilerplate_opening 2/2" in (tmp_path / "canary" / "report.md").read_text()


def test_verdict():
    ok = {
        "texts": 4,
        "errors": 0,
        "mean_tokens": 150,
        **dict.fromkeys(
            ["truncated", "repetition", "refusal_or_meta", "boilerplate_opening", "too_short"], 0
        ),
    }
    assert verdict(ok, target_words=110) == "OK"
    assert verdict({**ok, "truncated": 2}, 110) == "WARN: truncated 2/4"
    assert verdict({**ok, "mean_tokens": 20}, 110).startswith("WARN: mean 20 tokens")
    assert verdict({**ok, "texts": 0, "errors": 3}, 110) == "FAIL: every request failed"
