from pathlib import Path

import pytest

from factory.prompts import PromptError, Prompts
from factory.records import Request, Seed

ROOT = Path(__file__).resolve().parent.parent


def test_shipped_templates_render_system_and_user_messages():
    p = Prompts(ROOT / "prompts")
    math = p.render("math_cot.jinja", Seed("s", "What is 1+1?"))
    assert [m["role"] for m in math] == ["system", "user"]
    assert "What is 1+1?" in math[1]["content"] and "\\boxed" in math[0]["content"]
    code = p.render("code_cot.jinja", Seed("s", "def f(x):\n    pass", domain="code", entry_point="f"))
    assert "`f`" in code[1]["content"] and "def f(x):" in code[1]["content"]


@pytest.mark.parametrize("body,message", [
    ("Solve:\n{{ problem }}\n{{ hint }}\n", r"t.jinja:3: undefined variable 'hint' \(seed from src row 7\)"),
    ("Solve:\n\n{{ meta.level }}\n", r"t.jinja:3: undefined variable 'level'"),
    ("Solve:\n{% if %}\n", r"t.jinja:2: syntax error"),
    ("{# nothing #}", r"t.jinja: renders an empty user message"),
])
def test_template_errors_name_template_line_and_variable(tmp_path, body, message):
    (tmp_path / "t.jinja").write_text(body)
    with pytest.raises(PromptError, match=message):
        Prompts(tmp_path).render("t.jinja", Seed("src", "x", meta={"row": 7}))


def test_missing_template():
    with pytest.raises(PromptError, match="template not found"):
        Prompts(ROOT / "prompts").load("nope.jinja")


def test_request_ids_hash_content_not_code():
    msgs = ({"role": "user", "content": "hi"},)
    r = Request("seed", "t", "m", "a.jinja", msgs, {"temperature": 0.7, "max_tokens": 5}, 0)
    same = Request("seed", "other-name", "m", "b.jinja", msgs, {"max_tokens": 5, "temperature": 0.7}, 0)
    assert r.request_id == same.request_id  # template name / teacher label are not content
    assert r.prompt_id == Request("seed", "t", "m", "a.jinja", msgs, r.params, 1).prompt_id
    assert r.request_id != Request("seed", "t", "m", "a.jinja", msgs, r.params, 1).request_id
    assert r.request_id != Request("seed", "t", "m2", "a.jinja", msgs, r.params, 0).request_id
    assert r.request_id != Request("seed", "t", "m", "a.jinja", msgs, {**r.params, "temperature": 1.0}, 0).request_id


SOURCE_ROW = {"Body": "Jack had 8 pens.", "Question Text": "How many?", "Level": 2}


def test_the_source_row_is_available_as_row_and_meta_stays_as_it_was(tmp_path):
    (tmp_path / "t.jinja").write_text('{{ row.Body }} {{ row["Question Text"] }} L{{ row.Level }} {{ meta }}')
    seed = Seed("src", "x", meta={"row": 3, "id": "a", "source_row": SOURCE_ROW})
    (user,) = Prompts(tmp_path).render("t.jinja", seed)
    assert user["content"] == "Jack had 8 pens. How many? L2 {'row': 3, 'id': 'a'}"
    (tmp_path / "u.jinja").write_text("{{ row.Missing }}")
    with pytest.raises(PromptError, match=r"u.jinja:1: undefined variable 'Missing' \(seed from src row 3\)"):
        Prompts(tmp_path).render("u.jinja", seed)
    with pytest.raises(PromptError, match=r"undefined variable 'Body'"):  # a seed built in code has no row
        Prompts(tmp_path).render("t.jinja", Seed("src", "x", meta={"row": 1}))


def test_shipped_templates_keep_their_request_ids():
    # golden ids from before the source row was kept in meta: stored answers stay cached after an upgrade
    p = Prompts(ROOT / "prompts")
    meta = {"row": 1, "id": "x", "source_row": {"question": "What is 1+1?", "answer": "#### 2"}}
    for template, seed, want in [
        ("math_cot.jinja", Seed("gsm8k", "What is 1+1?", answer="2", meta=meta), "d079052f2c735b643f30499dc44679ba"),
        ("code_cot.jinja", Seed("he", "def f(x):\n    pass", domain="code", entry_point="f", meta=meta),
         "03e7069fd38007363a6fbcc36c760dea"),
    ]:
        messages = p.render(template, seed)
        assert Request(seed.seed_id, "t", "m", template, messages, {"temperature": 0.7}, 0).request_id == want


def test_code_prompts_ask_for_what_the_tests_run():
    # HumanEval keeps its prompt (and so its request ids, above); case-tested seeds get a statement in prose
    import json

    p = Prompts(ROOT / "prompts")

    def user(tests, entry_point=None):
        seed = Seed("s", "Given n, print n squared.", domain="code", tests=tests, entry_point=entry_point)
        return p.render("code_cot.jinja", seed)[-1]["content"]

    stdin = user(json.dumps({"input": ["2\n"], "output": ["4\n"]}))
    assert "reads the input from standard input" in stdin and "```python\nGiven" not in stdin
    assert "`square`" in user(json.dumps({"fn_name": "square", "inputs": [[2]], "outputs": [[4]]}))
    mbpp = user(json.dumps(["assert square(2) == 4", "assert square(3) == 9", "assert square(0) == 0",
                            "assert square(1) == 1"]))
    assert "assert square(3) == 9" in mbpp and "assert square(1) == 1" not in mbpp  # the first three, as MBPP
    assert user("assert square(2) == 4\n").startswith("Complete the following Python function")
