"""factory.export.assistant_content: the SFT / DPO assistant text of every reasoning family, from the split the
parser reads (factory.parse.split_reasoning)."""

from __future__ import annotations

import pytest

from factory.export import assistant_content
from factory.parse import parse, split_reasoning


def _stored_reasoning(text: str, field: str | None = None) -> str | None:
    """What the filter stores as a trace's reasoning (factory.filter.parse_new)."""
    p = parse(text, field, finish_reason="stop")
    return text if p.reasoning is None and p.error is None and text else p.reasoning


def _export(text: str, field: str | None = None, domain: str = "math") -> str:
    p = parse(text, field, domain=domain, finish_reason="stop")
    return assistant_content(text, _stored_reasoning(text, field), p.answer, domain, field)


def _before(text: str, reasoning: str | None, answer: str | None, domain: str, field: str | None) -> str:
    """The format as it was exported before split_reasoning (a <think> trace must stay byte-identical)."""
    if "</think>" in text:
        final = text.split("</think>", 1)[1].strip()
    elif field:
        final = text.strip()
    else:
        final = f"```python\n{answer}\n```" if domain == "code" else f"The final answer is $\\boxed{{{answer}}}$."
    return f"<think>\n{(reasoning or '').strip()}\n</think>\n\n{final}"


@pytest.mark.parametrize(
    "text, field, domain",
    [
        ("<think>\n16 - 3 - 4 = 9; 9 * 2 = 18.\n</think>\n\nJanet makes $\\boxed{18}$ dollars.", None, "math"),
        ("<think>9 * 2 = 18</think>The answer is 18.", None, "math"),
        # the chat template opened the block (Qwen3 / R1-distill): a lone </think>
        ("Okay, 9 * 2 = 18.\n</think>\n\n**Answer:** 18", None, "math"),
        ("<think>\nplan\n</think>\n\n```python\ndef f():\n    return 1\n```", None, "code"),
        # a reasoning field beside the content, with and without a </think> in it
        ("The answer is \\boxed{18}.", "16 - 3 - 4 = 9; 9 * 2 = 18", "math"),
        ("ok\n</think>\n\n#### 18", "16 - 3 - 4 = 9", "math"),
        # a plain chain of thought: the text is the reasoning, the extracted answer restated
        ("16 - 3 - 4 = 9 and 9 * 2 = 18.\n#### 18", None, "math"),
        ("Plan: return 1.\n```python\ndef f():\n    return 1\n```", None, "code"),
    ],
)
def test_think_and_plain_traces_export_byte_identical_to_before(text, field, domain):
    p = parse(text, field, domain=domain, finish_reason="stop")
    stored = _stored_reasoning(text, field)
    assert assistant_content(text, stored, p.answer, domain, field) == _before(text, stored, p.answer, domain, field)


_OPENTHOUGHTS = (
    "<|begin_of_thought|>\n\nOkay, 16 - 3 - 4 = 9 eggs. Is it \\boxed{20}? No: 9 * 2 = 18.\n\n<|end_of_thought|>\n\n"
    "<|begin_of_solution|>\n\nJanet keeps 16 - 7 = 9 eggs and sells them at \\$2:\n\n\\[ 9 \\times 2 = 18 \\]\n\n"
    "Thus Janet makes \\(\\boxed{18}\\) dollars every day.\n\n<|end_of_solution|>"
)
_HARMONY = (
    "<|channel|>analysis<|message|>We need 16-3-4 = 9. 9*2 = 18. Maybe 20? No.<|end|>"
    "<|start|>assistant<|channel|>commentary to=functions.calc <|constrain|>json<|message|>"
    '{"expr": "9*2"}<|call|><|start|>assistant<|channel|>final<|message|>She makes **$18** a day.\n\n**18**<|return|>'
)


def test_openthoughts_exports_its_written_solution():
    out = _export(_OPENTHOUGHTS)
    assert out == ("<think>\nOkay, 16 - 3 - 4 = 9 eggs. Is it \\boxed{20}? No: 9 * 2 = 18.\n</think>\n\n"
                   "Janet keeps 16 - 7 = 9 eggs and sells them at \\$2:\n\n\\[ 9 \\times 2 = 18 \\]\n\n"
                   "Thus Janet makes \\(\\boxed{18}\\) dollars every day.")
    assert "<|" not in out and "The final answer is" not in out


def test_harmony_exports_its_final_message():
    out = _export(_HARMONY)
    reasoning, final = out.split("\n</think>\n\n")
    assert final == "She makes **$18** a day.\n\n**18**"
    assert "We need 16-3-4 = 9" in reasoning and '{"expr": "9*2"}' in reasoning and "<|" not in out
    # the same with the special tokens dropped by the server
    bare = "analysisWe need 9*2 = 18, not 20.assistantfinalShe makes **$18** a day."
    assert _export(bare) == "<think>\nWe need 9*2 = 18, not 20.\n</think>\n\nShe makes **$18** a day."


@pytest.mark.parametrize(
    "text, reasoning, final",
    [
        ("[THINK]9 * 2 = 18, not 20.[/THINK]**Summary**\n\n\\boxed{18}", "9 * 2 = 18, not 20.",
         "**Summary**\n\n\\boxed{18}"),
        ("◁think▷First attempt: \\boxed{20}. Redo: 18.◁/think▷Given 16 eggs.\n\n$$\\boxed{18}$$",
         "First attempt: \\boxed{20}. Redo: 18.", "Given 16 eggs.\n\n$$\\boxed{18}$$"),
        ("<seed:think>9 * 2 = 18</seed:think>The answer is 18.", "9 * 2 = 18", "The answer is 18."),
        ("<thinking>\n9 * 2 = 18\n</thinking>\n\n<answer>18</answer>", "9 * 2 = 18", "<answer>18</answer>"),
        # a second <think> after the first one's close: the parser's split, not the first </think>
        ("<think>a \\boxed{20}</think>x<think>b: 18</think>The answer is 18.", "a \\boxed{20}xb: 18",
         "The answer is 18."),
    ],
)
def test_other_families_export_reasoning_and_written_final(text, reasoning, final):
    assert _export(text) == f"<think>\n{reasoning}\n</think>\n\n{final}"


def test_no_final_is_invented_where_the_teacher_wrote_none():
    # a block that never closed: all reasoning, no final (never "\boxed{None}")
    out = _export("<think>9 * 2 = 18, and then")
    assert out == "<think>\n9 * 2 = 18, and then\n</think>\n\n"
    out = assistant_content("I could not finish.", "I could not finish.", None, "math", None)
    assert out == "<think>\nI could not finish.\n</think>\n\n" and "None" not in out
    # an empty block a template opened and closed: the content is the final, not a restated answer
    assert _export("</think>\n\nThe answer is 18.") == "<think>\n\n</think>\n\nThe answer is 18."


def test_split_reasoning_matches_what_parse_reads():
    for text, field in [(_OPENTHOUGHTS, None), (_HARMONY, None), ("plain 18.\n#### 18", None),
                        ("The answer is 18.", "9 * 2 = 18"), ("<think>x</think>#### 18", None)]:
        reasoning, region = split_reasoning(text, field)
        p = parse(text, field, finish_reason="stop")
        assert p.reasoning == (reasoning or None)
        assert parse(region, finish_reason="stop").answer == p.answer == "18"
    assert split_reasoning("plain text, no answer") == (None, "plain text, no answer")
    assert split_reasoning("<think>never closed") == ("never closed", None)
    assert split_reasoning(b"\xff<think>a</think>5") == ("a", "5")
    cut = _OPENTHOUGHTS.replace("dollars every day.\n\n<|end_of_solution|>", "dollars")
    assert split_reasoning(cut, finish_reason="length")[1] is None
    assert split_reasoning(cut)[1].strip().endswith("dollars")
