"""Prompt templates: one YAML file per template under prompts/<split>/.

A template file holds metadata (format, audience, version, the seed kinds it applies to) and a
Jinja2 body rendered with StrictUndefined, so a misspelt variable is an error, not an empty
string. Seed text is passed as a variable value and Jinja2 never re-parses values, so braces or
template syntax inside a seed come out verbatim.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import jinja2
import jinja2.runtime
import yaml

from cosmoforge.core.contracts import KINDS
from cosmoforge.core.errors import TemplateError, yaml_error_line

_ENV = jinja2.Environment(
    undefined=jinja2.StrictUndefined,
    autoescape=False,
    keep_trailing_newline=False,
    trim_blocks=True,
    lstrip_blocks=True,
)


@functools.lru_cache(maxsize=256)
def _compiled(body: str) -> tuple[jinja2.Template, dict]:
    # Compiling is ~50x the cost of rendering: once per template body, not once per prompt. The
    # globals (a ChainMap) are merged into a plain dict once, too.
    compiled = _ENV.from_string(body)
    return compiled, dict(compiled.globals)


REQUIRED_KEYS = {"format", "audience", "version", "kinds", "template"}


@dataclass(frozen=True)
class Template:
    split: str
    name: str
    format: str
    audience: str
    version: int
    kinds: tuple[str, ...]
    body: str
    path: str

    @property
    def template_id(self) -> str:
        return f"{self.split}/{self.name}"

    def render(self, **variables) -> str:
        try:
            compiled, globals_ = _compiled(self.body)
            # Template.render builds its context from the globals ChainMap on every call, which
            # costs more than rendering a prompt; a context over one merged dict renders the
            # same text (tested against Template.render for every bundled template).
            context = jinja2.runtime.Context(
                _ENV, {**globals_, **variables}, compiled.name, compiled.blocks
            )
            text = "".join(compiled.root_render_func(context))
        except jinja2.UndefinedError as exc:
            raise TemplateError(f"{self.path}: {exc.message}") from exc
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateError(f"{self.path}: line {exc.lineno}: {exc.message}") from exc
        text = text.strip()
        if not text:
            raise TemplateError(
                f"{self.path}: renders an empty prompt for this seed; give field 'template' "
                "text that does not depend on empty seed fields only"
            )
        return text


def load_template(path: Path, split: str) -> Template:
    try:
        # libyaml's parser where PyYAML has it: a plan loads every template (~10x faster).
        data = yaml.load(
            path.read_text(encoding="utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        )
    except UnicodeDecodeError:
        raise TemplateError(f"{path}: not UTF-8 text; save the template as UTF-8") from None
    except yaml.YAMLError as exc:
        raise TemplateError(yaml_error_line(path, exc)) from exc
    if not isinstance(data, dict):
        raise TemplateError(f"{path}: expected a mapping with keys {sorted(REQUIRED_KEYS)}")
    missing = REQUIRED_KEYS - data.keys()
    if missing:
        raise TemplateError(f"{path}: missing key(s) {sorted(missing)}")
    kinds = data["kinds"]
    if not isinstance(kinds, list) or not all(k in KINDS for k in kinds):
        raise TemplateError(f"{path}: field 'kinds' must list seed kinds from {sorted(KINDS)}")
    if not isinstance(data["template"], str) or not data["template"].strip():
        raise TemplateError(f"{path}: field 'template' is empty; write the prompt's text there")
    try:
        _ENV.parse(data["template"])
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"{path}: field 'template', line {exc.lineno}: {exc.message}") from exc
    return Template(
        split=split,
        name=path.stem,
        format=str(data["format"]),
        audience=str(data["audience"]),
        version=int(data["version"]),
        kinds=tuple(kinds),
        body=data["template"],
        path=str(path),
    )


def load_templates(
    prompts_dir: str | Path, split: str, names: list[str] | None = None
) -> list[Template]:
    folder = Path(prompts_dir) / split
    if not folder.is_dir():
        raise TemplateError(f"{folder}: no template folder for split '{split}'")
    available = {p.stem: p for p in sorted(folder.glob("*.yaml"))}
    if names is None:
        chosen = list(available)
    else:
        unknown = [n for n in names if n not in available]
        if unknown:
            raise TemplateError(
                f"split '{split}': unknown template(s) {unknown}; {folder} has {sorted(available)}"
            )
        chosen = list(names)
    if not chosen:
        misnamed = sorted(p.name for p in folder.glob("*.yml"))
        hint = f" ({', '.join(misnamed)}: templates end in .yaml; rename them)" if misnamed else ""
        raise TemplateError(f"{folder}: no templates{hint}")
    return [load_template(available[n], split) for n in sorted(chosen)]
