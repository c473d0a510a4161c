"""factory.parse: reasoning vs final answer, every answer form, hedges, garbage."""

from __future__ import annotations

import time

import pytest

from factory.parse import ANSWER_SCAN_CHARS, Parsed, parse


def test_parsed_is_frozen():
    p = parse("The answer is 4.")
    assert isinstance(p, Parsed)
    with pytest.raises(Exception):
        p.answer = "5"  # type: ignore[misc]


# --------------------------------------------------------------------------- answer forms


@pytest.mark.parametrize(
    "text, answer, source",
    [
        ("So we get $\\boxed{18}$.", "18", "boxed"),
        ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}", "boxed"),
        ("nested: \\boxed{\\frac{\\sqrt{3}}{2}}", "\\frac{\\sqrt{3}}{2}", "boxed"),
        ("deep: \\boxed{\\left\\{ 1, \\{2\\} \\right\\}}", "\\left\\{ 1, \\{2\\} \\right\\}", "boxed"),
        ("\\boxed{\\text{(C)}}", "\\text{(C)}", "boxed"),
        ("no braces: \\boxed 5", "5", "boxed"),
        ("no braces: $\\boxed 42$.", "42", "boxed"),
        ("\\boxed {7}", "7", "boxed"),
        ("\\fbox{3}", "3", "boxed"),
        ("\\boxed{\\boxed{7}}", "7", "boxed"),
        ("\\boxed{$12$}", "12", "boxed"),
        ("She makes $18 a day.\n#### 18", "18", "hashes"),
        ("#### 1,000\n", "1,000", "hashes"),
        ("The answer is 42.", "42", "answer_is"),
        ("The answer is: 42", "42", "answer_is"),
        ("the final answer is 3.5.", "3.5", "answer_is"),
        ("Thus the final answer is $\\frac{1}{2}$. Done", "\\frac{1}{2}", "answer_is"),
        ("The answer is $3.5$ dollars.", "3.5", "answer_is"),
        ("The answer is \\(x=2\\).", "x=2", "answer_is"),
        ("**Final Answer:** 12", "12", "answer_is"),
        ("Final answer: 12\nThanks!", "12", "answer_is"),
        ("The final answer is:\n\n$$7$$", "7", "answer_is"),
        ("The answer is **9**.", "9", "answer_is"),
        # a sentence end is ". " or end of text, not the decimal point
        ("So the answer is 2.75. Let me know.", "2.75", "answer_is"),
        # a solution set joined by "or" is not a hedge
        ("Final answer: $x<-2 \\text{ or } x>3$", "x<-2 \\text{ or } x>3", "answer_is"),
        ("\\boxed{\\pm 3}", "\\pm 3", "boxed"),
    ],
)
def test_answer_forms(text, answer, source):
    p = parse(text)
    assert p.error is None, p
    assert p.answer == answer
    assert p.answer_source == source


def test_priority_boxed_over_hashes_and_answer_is():
    p = parse("The answer is 3.\n#### 4\nSo \\boxed{5}")
    assert (p.answer, p.answer_source) == ("5", "boxed")
    p = parse("The answer is 3.\n#### 4")
    assert (p.answer, p.answer_source) == ("4", "hashes")


def test_restating_the_boxed_answer_is_not_a_hedge():
    p = parse("So $\\boxed{18}$.\n\nThe answer is 18 dollars.")
    assert (p.answer, p.error) == ("18", None)
    p = parse("So $\\boxed{44}$.\nWe may check: 17*44 = 748, so our answer is correct.")
    assert (p.answer, p.error) == ("44", None)
    p = parse("The final answer is $\\boxed{18}$. I hope it is correct.")
    assert (p.answer, p.error) == ("18", None)


def test_last_answer_is_wins():
    p = parse("I thought the answer is 3. Re-checking, the answer is 4.")
    assert p.answer == "4"


def test_same_boxed_repeated_is_not_a_hedge():
    p = parse("So $\\boxed{18}$. Therefore the final answer is $\\boxed{18}$.")
    assert (p.answer, p.error) == ("18", None)
    p = parse("\\boxed{\\dfrac{1}{2}} ... \\boxed{\\frac{1}{2}}")
    assert p.error is None


def test_markdown_heading_is_not_hashes_answer():
    p = parse("#### Step 1: add\n2+2=4\n#### Final Answer\nThe answer is 4.")
    assert (p.answer, p.answer_source) == ("4", "answer_is")


# --------------------------------------------------------------------------- reasoning


def test_think_block_split():
    p = parse("<think>3+4 is 7, so the answer is 7</think>\nThe answer is $\\boxed{7}$.")
    assert p.reasoning == "3+4 is 7, so the answer is 7"
    assert p.think_closed and p.answer == "7" and p.error is None


def test_reasoning_field():
    p = parse("Final answer: 7", reasoning_field="3+4=7, so \\boxed{7}")
    assert p.reasoning == "3+4=7, so \\boxed{7}"
    assert p.think_closed and p.answer == "7"


def test_close_tag_without_open_tag():
    # chat templates that put <think> in the prompt: the completion starts inside the block
    p = parse("we add 3 and 4\n</think>\n\\boxed{7}")
    assert p.reasoning == "we add 3 and 4" and p.think_closed and p.answer == "7"


def test_answer_inside_reasoning_is_ignored():
    p = parse("<think>the answer is \\boxed{7}</think>")
    assert p.answer is None and p.error == "no_answer" and p.think_closed
    p = parse("<think>#### 7\nThe answer is 7.</think>\nI am not sure.")
    assert p.answer is None and p.error == "no_answer"
    p = parse("The answer is 9.", reasoning_field="so the answer is \\boxed{7}")
    assert p.answer == "9"
    # the boxed 7 inside the reasoning is not a second (hedged) answer either
    p = parse("<think>maybe \\boxed{7}</think>The answer is \\boxed{9}.")
    assert (p.answer, p.error) == ("9", None)


def test_unclosed_think_has_no_answer():
    p = parse("<think>3+4 = 7, so the answer is \\boxed{7}.")
    assert p.answer is None and p.error == "unclosed_think" and not p.think_closed
    assert "\\boxed{7}" in p.reasoning
    # a second, unclosed block after a closed one
    p = parse("<think>a</think>The answer is 3.<think>no wait, \\boxed{4}")
    assert p.answer is None and p.error == "unclosed_think"


def test_no_think_plain_answer():
    p = parse("3+4=7.\nThe answer is 7.")
    assert p.reasoning is None and not p.think_closed and p.answer == "7"


def test_truncated_flag():
    p = parse("<think>3+4 is", finish_reason="length")
    assert p.truncated and p.answer is None
    p = parse("<think>x</think>\\boxed{7}", finish_reason="stop")
    assert not p.truncated and p.answer == "7"
    # truncated is reported as a flag; the caller decides (verify_traces rejects it)
    p = parse("<think>x</think>\\boxed{7} and to double-check", finish_reason="length")
    assert p.truncated and p.answer == "7"


def test_cut_inside_last_box():
    p = parse("<think>x</think>The answer is \\boxed{\\frac{1}{2", finish_reason="length")
    assert p.answer is None and p.error == "no_answer"


def test_no_answer():
    for t in ["", None, "I don't know.", "<think></think>", "\\boxed{}", "The answer is"]:
        p = parse(t)
        assert p.answer is None and p.error == "no_answer", (t, p)


# --------------------------------------------------------------------------- hedges


@pytest.mark.parametrize(
    "text",
    [
        "The answer is either 18 or 20.",
        "The answer is 18 or 20.",
        "So the final answer is $18$ or $20$.",
        "\\boxed{18 \\text{ or } 20}",
        "\\boxed{18} or maybe \\boxed{20}",
        "<think>..</think>It is $\\boxed{18}$. Alternatively, $\\boxed{20}$.",
        "#### 18 or 20",
        "The answer is probably 18.",
        "\\boxed{\\frac{1}{2} or \\frac{1}{3}}",
        "So \\boxed{20}. Wait, actually the answer is 18.",
        "\\boxed{20}\n#### 18",
    ],
)
def test_hedged(text):
    p = parse(text)
    assert p.answer is None and p.error == "hedged_answer", p


# --------------------------------------------------------------------------- code


def test_code_blocks():
    t = "Plan.\n```python\ndef f():\n    return 1\n```\nBetter:\n```python\ndef f():\n    return 2\n```\nDone."
    p = parse(t, domain="code")
    assert p.answer == "def f():\n    return 2\n" and p.answer_source == "code_block"
    p = parse("```\nprint(3)\n```", domain="code")
    assert p.answer == "print(3)\n"


def test_code_unclosed_fence():
    t = "Here:\n```python\ndef f():\n    return 1\n"
    assert parse(t, domain="code", finish_reason="stop").answer == "def f():\n    return 1\n"
    p = parse(t, domain="code", finish_reason="length")
    assert p.answer is None and p.error == "unclosed_code_block" and p.truncated


def test_code_inside_think_ignored():
    t = "<think>```python\nx = 1\n```</think>\nNo code here."
    p = parse(t, domain="code")
    assert p.answer is None and p.error == "no_answer"
    t = "<think>```python\nx = 1\n```</think>\n```python\nx = 2\n```"
    assert parse(t, domain="code").answer == "x = 2\n"


# --------------------------------------------------------------------------- robustness


@pytest.mark.parametrize(
    "junk",
    [
        b"\xff\xfe\x00garbage \\boxed{3}",
        "lone surrogate \udc80 \\boxed{4}",
        "\x00" * 1000,
        "\\boxed{" * 5000,
        "}" * 5000 + "\\boxed",
        "<think>" * 1000,
        "</think>" * 1000,
        "```" * 3000,
        "the answer is " * 5000,
        12345,
    ],
)
def test_garbage_never_raises(junk):
    parse(junk)
    parse(junk, domain="code")
    parse(junk, reasoning_field=junk, finish_reason="length")


def test_huge_input_is_fast_and_uses_the_tail():
    body = ("We compute 2+2 and keep going. " * 200_000)  # ~6 MB
    t0 = time.perf_counter()
    p = parse("<think>" + body + "</think>\nThe answer is \\boxed{4}.")
    assert p.answer == "4"
    p = parse(body + "\\boxed{4}")
    assert p.answer == "4"
    # an answer far before the scanned tail is not looked at
    p = parse("\\boxed{9}" + "x" * (ANSWER_SCAN_CHARS + 10))
    assert p.answer is None
    assert time.perf_counter() - t0 < 2.0


def test_throughput():
    texts = [
        "<think>Janet has 16 eggs, eats 3, bakes 4, sells 9 at $2: 18.</think>\nSo she makes $18.\n"
        "The final answer is $\\boxed{18}$.",
        "Step 1: 3+4=7.\nStep 2: 7*2=14.\n#### 14",
        "<think>" + "reasoning " * 300 + "</think>The answer is 3.5.",
        "<think>unclosed " * 50,
    ] * 500
    t0 = time.perf_counter()
    for t in texts:
        parse(t)
    rate = len(texts) / (time.perf_counter() - t0)
    assert rate > 20_000, f"{rate:.0f} parses/s"
