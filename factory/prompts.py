"""Prompt templates: jinja2 with StrictUndefined over prompts/, rendering chat messages.

A template's body is the user message. An optional `{% set system %}…{% endset %}` block
becomes the system message. Variables: problem, domain, entry_point, meta (row number, id), row
(the whole source row: `{{ row.Body }}`, `{{ row["Question Text"] }}`), seed itself, and what a code
seed's tests run (checks/io_tests.py `for_prompt`): tests_kind ("stdin": a whole program; "call": a
function or a `Solution` method; "asserts": functions called by assert lines; none: HumanEval-style
tests), fn_name (the function the cases call, if named) and example_tests (the first assert lines).
"""

from __future__ import annotations

import re
from pathlib import Path

import jinja2

from factory.checks.io_tests import for_prompt
from factory.errors import PromptError  # noqa: F401 - raised here; importable from this module too
from factory.records import Seed
from factory.sources import SOURCE_ROW


_UNDEFINED = re.compile(r"'([^']+)' is undefined|has no attribute '([^']+)'")


def _shipped_prompts() -> list[str]:
    from factory.config import shipped_root

    root = shipped_root()
    return [str(root / "prompts")] if root else []


class Prompts:
    def __init__(self, prompts_dir: Path):
        self.dir = Path(prompts_dir)
        self.env = jinja2.Environment(
            # the project's prompts first, then the ones that ship with factory (e.g. judge.jinja)
            loader=jinja2.FileSystemLoader([str(self.dir)] + _shipped_prompts()), undefined=jinja2.StrictUndefined,
            keep_trailing_newline=False, autoescape=False)
        self._cache: dict[str, jinja2.Template] = {}

    def load(self, name: str) -> jinja2.Template:
        if name not in self._cache:
            try:
                self._cache[name] = self.env.get_template(name)
            except jinja2.TemplateNotFound:
                raise PromptError(f"{self.dir / name}: template not found") from None
            except jinja2.TemplateSyntaxError as e:
                raise PromptError(f"{self.dir / name}:{e.lineno}: syntax error: {e.message}") from None
        return self._cache[name]

    def render(self, name: str, seed: Seed) -> tuple[dict[str, str], ...]:
        # `meta` stays what it always was (row number, id): a template printing it renders, and so
        # hashes, the same as before the source row was kept next to it
        meta = {k: v for k, v in seed.meta.items() if k != SOURCE_ROW}
        context = {"problem": seed.problem, "domain": seed.domain, "entry_point": seed.entry_point,
                   "meta": meta, "row": seed.meta.get(SOURCE_ROW, {}), "seed": seed,
                   **for_prompt(seed.tests if seed.domain == "code" else None, seed.entry_point)}
        return self.render_context(name, context, seed)

    def render_context(self, name: str, context: dict, seed: Seed | None = None) -> tuple[dict[str, str], ...]:
        """Render a template with any variables (the LLM judge's template takes answer and reference)."""
        template = self.load(name)
        try:
            module = template.make_module(context)
            user = str(module).strip()
            system = str(getattr(module, "system", "") or "").strip()
        except jinja2.UndefinedError as e:
            where = f" (seed from {seed.source} row {seed.meta.get('row', '?')})" if seed else ""
            raise PromptError(self._where(template, e) + f": undefined variable '{self._variable(e)}'"
                              + where) from None
        except jinja2.TemplateError as e:
            raise PromptError(self._where(template, e) + f": {e}") from None
        if not user:
            raise PromptError(f"{self.dir / name}: renders an empty user message")
        messages = ({"role": "system", "content": system},) if system else ()
        return messages + ({"role": "user", "content": user},)

    @staticmethod
    def _where(template: jinja2.Template, err: Exception) -> str:
        """file:line of the innermost template frame, mapped from compiled code to template lines."""
        tb, line = err.__traceback__, None
        while tb is not None:
            if tb.tb_frame.f_code.co_filename == template.filename:
                line = template.get_corresponding_lineno(tb.tb_lineno)
            tb = tb.tb_next
        return f"{template.filename}:{line}" if line else str(template.filename)

    @staticmethod
    def _variable(err: Exception) -> str:
        m = _UNDEFINED.search(str(err))
        return (m.group(1) or m.group(2)) if m else str(err)
