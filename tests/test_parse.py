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


def test_a_mixed_batch_parses_each_form():
    # the speed of this batch is measured by benchmarks/math_verify.py ("parse"), not asserted here
    texts = [
        "<think>Janet has 16 eggs, eats 3, bakes 4, sells 9 at $2: 18.</think>\nSo she makes $18.\n"
        "The final answer is $\\boxed{18}$.",
        "Step 1: 3+4=7.\nStep 2: 7*2=14.\n#### 14",
        "<think>" + "reasoning " * 300 + "</think>The answer is 3.5.",
        "<think>unclosed " * 50,
    ]
    assert [parse(t).answer for t in texts] == ["18", "14", "3.5", None]


# --------------------------------------------------------------------------- last_boxed and placeholders

from factory.parse import is_placeholder, last_boxed  # noqa: E402


@pytest.mark.parametrize(
    "text, want",
    [
        ("\\boxed{1} then \\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
        ("\\boxed{\\frac{1}{2}} \\boxed{ANSWER}", "\\frac{1}{2}"),
        ("\\boxed{7} \\boxed{}", "7"),
        ("\\boxed{7} \\boxed{ }", "7"),
        ("\\boxed{7} \\boxed{...}", "7"),
        ("\\boxed{7} \\boxed{your answer}", "7"),
        ("\\boxed{7} \\boxed{\\text{answer}}", "7"),
        ("\\fbox{3}", "3"),
        ("$\\boxed 5$", "5"),
        ("\\boxed{\\left\\{1,2\\right\\}}", "\\left\\{1,2\\right\\}"),
        ("\\boxed{}", None),
        ("\\boxed{answer}", None),
        ("no box", None),
        ("", None),
        (None, None),
    ],
)
def test_last_boxed(text, want):
    assert last_boxed(text) == want


def test_is_placeholder():
    for p in ["", " ", "ANSWER", "answer", "Your Answer", "...", "\\ldots", "\\text{Final Answer}", "?"]:
        assert is_placeholder(p), p
    for p in ["0", "x", "A", "\\text{(B)}", "none of these", "\\emptyset"]:
        assert not is_placeholder(p), p


# --------------------------------------------------------------------------- the forms teachers write

@pytest.mark.parametrize(
    "text, answer",
    [
        ("**Answer:** 42", "42"),
        ("Answer: 42", "42"),
        ("ANSWER: 42", "42"),
        ("**Answer: 42**", "42"),
        ("Claude style.\n\n**Answer: 42**", "42"),
        ("The answer is $20.", "$20"),
        ("the answer is: $20.", "$20"),
        ("The answer is \\$1,234.50.", "\\$1,234.50"),
        ("**Answer:** $\\$18$", "\\$18"),
        ("The answer is $\\$18$.", "\\$18"),
        ("The answer is \\text{12:50}.", "\\text{12:50}"),
        ("Final answer: 7 dozens", "7 dozens"),
        ("**Final Answer**\n42", "42"),
        ("**Final Answer**\n\n**42.**", "42"),
        ("### Final Answer\n\n$$\\frac{5}{2}$$", "\\frac{5}{2}"),
        ("$\\text{Answer: } 42$", "42"),
        ("\\text{Answer: } 42", "42"),
        ("\\boxed{\\text{B}}", "\\text{B}"),
        ("\\boxed{(B)}", "(B)"),
        ("The answer is (B).", "(B)"),
        ("$\\boxed{42}$.", "42"),
        ("\\[ \\boxed{5} \\]", "5"),
        ("The final answer is: $\\boxed{5}$", "5"),
        ("Final answer: **42**.", "42"),
        ("The answer is −5.", "−5"),
        ("The final answer is $x = 5$.", "x = 5"),
        ("**Final answer:** $\\dfrac{5}{2}$", "\\dfrac{5}{2}"),
        ("The answer is 5/2.", "5/2"),
        ("The answer is $2.5\\%$.", "2.5\\%"),
        ("The answer is 50 percent.", "50 percent"),
        ("The answer is 3:45 PM.", "3:45 PM"),
        ("The answer is 1.2e-5.", "1.2e-5"),
        ("The answer is $1.2 \\times 10^{-5}$.", "1.2 \\times 10^{-5}"),
        ("The answer is 1,234,567.", "1,234,567"),
        ("The answer is $12 \\text{ cm}^2$.", "12 \\text{ cm}^2"),
        ("The answer is $(3, -1)$.", "(3, -1)"),
        ("The answer is $[2, 5)$.", "[2, 5)"),
        ("The answer is $x \\in (-\\infty, 3]$.", "x \\in (-\\infty, 3]"),
        ("The answer is $\\sqrt{2}/2$.", "\\sqrt{2}/2"),
        ("The answer is $2516_8$.", "2516_8"),
        ("#### 42", "42"),
        ("<think>long\nthinking</think>\n\nThe answer is \\(\\boxed{12}\\).", "12"),
        # a placeholder box never hides or cancels a later answer
        ("Put your final answer in \\boxed{}.\nThe answer is 5.", "5"),
        ("\\boxed{ANSWER}\n#### 12", "12"),
        ("\\boxed{...}\n**Answer:** 7", "7"),
        ("\\boxed{your answer}\nFinal answer: 9", "9"),
        ("\\boxed{5}\nThe answer: put it in \\boxed{answer}.", "5"),
        ("\\boxed{\\text{answer}} then \\boxed{8}", "8"),
        # two currency amounts joined by "and" are a list, never the first amount
        ("It costs $5 and $7. The answer is $5 and $7.", "$5, $7"),
        ("The answer is 3 and 4.", "3, 4"),
    ],
)
def test_teacher_forms(text, answer):
    p = parse(text)
    assert (p.answer, p.error) == (answer, None), p


@pytest.mark.parametrize(
    "text",
    [
        "\\boxed{20}. Wait, actually the answer is 18.",
        "The answer is either 3 or 4.",
        "**Answer:** 18 or 20",
        "Answer: $18$ or $20$",
        "\\boxed{ANSWER} The answer is 3 or 4.",
        "\\boxed{5}\n**Answer:** 6",
        "\\boxed{}\n\\boxed{3}\n\\boxed{4}",
    ],
)
def test_hedged_teacher_forms(text):
    p = parse(text)
    assert p.answer is None and p.error == "hedged_answer", p


def test_placeholders_only_is_no_answer():
    for t in ["\\boxed{}", "\\boxed{ANSWER}", "Put it in \\boxed{your answer}.", "\\boxed{...} \\fbox{}"]:
        p = parse(t)
        assert p.answer is None and p.error == "no_answer", (t, p)


def test_placeholder_inside_think_and_answer_after():
    p = parse("<think>format: \\boxed{answer}; 6*7=42</think>\n**Answer:** 42")
    assert (p.answer, p.error) == ("42", None)


def test_same_value_boxed_twice_in_two_spellings_is_not_a_hedge():
    for t in ["So she makes \\boxed{\\$18}. The final answer is \\boxed{18}.", "\\boxed{1,000} ... \\boxed{1000}",
              "\\boxed{30^\\circ} so \\boxed{30}", "\\boxed{12\\text{ cm}} and \\boxed{12}", "\\boxed{5.0} \\boxed{5}"]:
        p = parse(t)
        assert p.error is None and p.answer_source == "boxed", (t, p)
    for t in ["\\boxed{\\text{(A)}} or \\boxed{\\text{(B)}}", "\\boxed{12\\text{ cm}} \\boxed{13}", "\\boxed{1,000} \\boxed{100}"]:
        assert parse(t).error == "hedged_answer", t


def test_bold_value_on_the_last_line_is_the_last_resort():
    p = parse("She sells 9 eggs at $2.\n\nJanet makes **$18** every day.")
    assert (p.answer, p.answer_source) == ("$18", "bold")
    # any other form wins; two bold values or a bold non-value are not an answer
    assert parse("The answer is 17.\nJanet makes **$18** every day.").answer == "17"
    assert parse("Janet makes **$18** or **$20** a day.").answer is None
    assert parse("**Step 3:** add them").answer is None
    assert parse("<think>**18**</think>\nI could not finish.").answer is None


@pytest.mark.parametrize(
    "text, answer",
    [
        ("**Final Answer:** The probability is $\\frac{3}{8}$.", "\\frac{3}{8}"),
        ("Answer: The total is 42 apples.", "42"),
        ("Final answer: she has 12 marbles left.", "12"),
        ("Answer: The cost is \\$1,250.", "\\$1,250"),
        # a sentence that changes, doubts or lists values is left whole (the verifier refuses it)
        ("Final answer: she has 12 fewer than Tom.", "she has 12 fewer than Tom"),
        ("The answer is x = 5 and y = 6.", "x = 5 and y = 6"),
        ("Final answer: Between 2 and 3", "Between 2 and 3"),
        ("Answer: The ratio is 3:4.", "The ratio is 3:4"),
        ("Answer: it went from 3 to 5", "it went from 3 to 5"),
    ],
)
def test_one_value_in_an_answer_sentence(text, answer):
    assert parse(text).answer == answer


# --------------------------------------------------------------------------- R1 tags, second readings, closings


@pytest.mark.parametrize(
    "text, finish, answer, error",
    [
        # <answer> tags: only the last non-empty block holds the final answer
        ("<think>…</think>\n<answer>62.0</answer>", "stop", "62.0", None),
        ("<think>…</think>\n<answer>$x = 1920$</answer>", "stop", "x = 1920", None),
        ("<think>…</think>\n<answer>The answer is \\boxed{7}.</answer>", "stop", "7", None),
        ("<answer>She has 12 marbles left.</answer>", "stop", "12", None),
        ("This gives us \\boxed{32}.\n\n<answer>41</answer>", "stop", "41", None),  # never the box before it
        ("Write it as <answer></answer>. So 5.\n<answer>5</answer>", "stop", "5", None),
        ("<answer>18 or 20</answer>", "stop", None, "hedged_answer"),
        ("<think>…</think>\n<answer>4", "length", None, "no_answer"),  # cut inside the tag
        # a second reading offered after a first final answer is a hedge
        ("The answer is 199. Alternatively, if we read the question differently, the answer is 200.", "stop",
         None, "hedged_answer"),
        ("The answer is $-\\frac{17}{21}$. On the other hand, the answer is $17/21$.", "stop", None, "hedged_answer"),
        ("The answer is 199. Alternatively, we can check it another way: the answer is 199.", "stop", "199", None),
        # one value written twice in two forms is not a hedge
        ("So we get $\\boxed{x = 100}$.\n\n**Final Answer**\n\\[\\boxed{100.0}\\]", "stop", "100.0", None),
        ("So we get $\\boxed{3470_{9}}$.\n\n**Final Answer**\n\\[\\boxed{3470_9}\\]", "stop", "3470_9", None),
        ("$\\boxed{18\\,\\text{fruits}}$ … \\boxed{\\text{18 fruits}}", "stop", "\\text{18 fruits}", None),
        ("$\\boxed{Evelyn}$ … \\boxed{\\text{Evelyn}}", "stop", "\\text{Evelyn}", None),
        ("$\\boxed{3/2}$ … \\boxed{\\dfrac{3}{2}}", "stop", "\\dfrac{3}{2}", None),
        ("$\\boxed{3/2}$ … \\boxed{\\dfrac{2}{3}}", "stop", None, "hedged_answer"),
        # a closing sentence with one value, when nothing else marks the answer
        ("9 * 2 = 18.\nTherefore, Janet makes $18 every day at the farmers market.", "stop", "$18", None),
        ("Thus, the total is 16.", "stop", "16", None),
        ("Hence $x = 4$.", "stop", "x = 4", None),
        ("Therefore, the area is $\\frac{3}{8}$ square units.", "stop", "\\frac{3}{8}", None),
        ("So she has 18 - 2 = 16 left.", "stop", None, "no_answer"),  # two values
        ("Therefore, she has about 16 left.", "stop", None, "no_answer"),  # a doubt
        ("Therefore, half of them, 12, remain.", "stop", None, "no_answer"),  # a value-changing word
        ("The answer is half of 144.", "stop", "half of 144", None),  # never 144
    ],
)
def test_answer_tags_second_readings_and_closings(text, finish, answer, error):
    p = parse(text, finish_reason=finish)
    assert (p.answer, p.error) == (answer, error)


def test_a_long_answer_in_an_answer_tag_is_kept_and_long_prose_is_not():
    moves = "\n".join(f"Move disk {i % 3 + 1} from Peg 1 to Peg 3" for i in range(127))  # ~4,000 chars
    p = parse(f"<think>Plan the moves.</think>\n<answer>\n{moves}\n</answer>")
    assert p.answer == moves and p.answer_source == "answer_tag"
    prose = "The answer is " + "very " * 600 + "long."
    assert parse(prose).answer is None


# --------------------------------------------------------------------------- reasoning delimiters of other families

# reasoning that states wrong values in every answer form: none of them may ever be the answer
_DECOY = ("Let me try: 16 - 3 = 13, so maybe \\boxed{13}? The answer is 13.\n#### 13\n"
          "Wait, I forgot the muffins: 16 - 3 - 4 = 9, and 9 * 2 = 18.")

# (name, opening, closing) of each family; an opening of None: the chat template opened the block
_FAMILIES = [
    ("r1", "<think>\n", "\n</think>\n\n"),
    ("qwen3_template_opened", None, "\n</think>\n\n"),
    ("openthoughts", "<|begin_of_thought|>\n\n", "\n\n<|end_of_thought|>\n\n"),
    ("magistral", "[THINK]", "[/THINK]\n"),
    ("magistral_template_opened", None, "[/THINK]"),
    ("seed_oss", "<seed:think>\n", "\n</seed:think>\n"),
    ("seed_oss_template_opened", None, "</seed:think>"),
    ("thinking", "<thinking>\n", "\n</thinking>\n\n"),
    ("thought", "  \n<thought>", "</thought>\n"),
    ("grpo_reasoning", "<reasoning>\n", "\n</reasoning>\n"),
    ("harmony", "<|channel|>analysis<|message|>", "<|end|><|start|>assistant<|channel|>final<|message|>"),
    ("harmony_start", "<|start|>assistant<|channel|>analysis<|message|>",
     "<|end|><|start|>assistant<|channel|>final<|message|>"),
    ("harmony_tokens_dropped", "analysis", "assistantfinal"),
    ("kimi", "◁think▷", "◁/think▷"),  # Kimi k1.5 / Kimi-VL-Thinking
    ("kimi_template_opened", None, "◁/think▷\n\n"),
]
_FAMILY_IDS = [f[0] for f in _FAMILIES]


def _completion(opening, closing, answer_text):
    return (opening or "") + _DECOY + closing + answer_text


@pytest.mark.parametrize("name, opening, closing", _FAMILIES, ids=_FAMILY_IDS)
@pytest.mark.parametrize(
    "answer_text, answer, source",
    [
        ("Janet sells 9 eggs at $2 each.\n\nThe final answer is $\\boxed{18}$.", "18", "boxed"),
        ("She makes 9 * 2 = 18 dollars.\n#### 18", "18", "hashes"),
        ("**Answer:** 18", "18", "answer_is"),
        ("Janet makes **$18** every day.", "$18", "bold"),
        ("<answer>18</answer>", "18", "answer_tag"),
    ],
)
def test_each_family_splits_reasoning_from_the_final_answer(name, opening, closing, answer_text, answer, source):
    p = parse(_completion(opening, closing, answer_text), finish_reason="stop")
    assert (p.answer, p.answer_source, p.error) == (answer, source, None), p
    assert p.think_closed
    assert "16 - 3 = 13" in p.reasoning and "forgot the muffins" in p.reasoning
    assert answer_text.strip()[:12] not in p.reasoning  # the answer is not reasoning


@pytest.mark.parametrize("name, opening, closing", _FAMILIES, ids=_FAMILY_IDS)
def test_numbers_in_the_reasoning_are_never_the_answer(name, opening, closing):
    p = parse(_completion(opening, closing, "I could not finish this one."), finish_reason="stop")
    assert (p.answer, p.error) == (None, "no_answer"), p
    assert p.think_closed and "\\boxed{13}" in p.reasoning


@pytest.mark.parametrize("name, opening, closing", [f for f in _FAMILIES if f[1] is not None and "analysis" != f[1]],
                         ids=[f[0] for f in _FAMILIES if f[1] is not None and "analysis" != f[1]])
def test_a_block_that_never_closed_has_no_answer(name, opening, closing):
    # cut off by the length limit inside the reasoning, or a model that never closed its block
    p = parse(opening + _DECOY, finish_reason="length")
    assert (p.answer, p.error, p.think_closed, p.truncated) == (None, "truncated_in_reasoning", False, True), p
    assert "\\boxed{13}" in p.reasoning
    p = parse(opening + _DECOY, finish_reason="stop")
    assert (p.answer, p.error, p.think_closed) == (None, "unclosed_think", False), p
    # closed, then cut off before any answer: still in the reasoning
    p = parse(opening + _DECOY + closing, finish_reason="length")
    assert (p.answer, p.error) == (None, "truncated_in_reasoning"), p


# real-shaped completions of each family, end to end
_BESPOKE = (
    "<|begin_of_thought|>\n\nOkay, so I need to find how much Janet makes. She has 16 eggs, eats 3 and bakes 4, "
    "so 16 - 3 - 4 = 9 left. Hmm, is it 9 * 2 = 18? Let me double-check: \\boxed{20} would mean she sold 10. No.\n\n"
    "<|end_of_thought|>\n\n<|begin_of_solution|>\n\nJanet's ducks lay 16 eggs per day. She uses 3 + 4 = 7 of them, "
    "leaving 16 - 7 = 9 eggs, sold at \\$2 each:\n\n\\[ 9 \\times 2 = 18 \\]\n\nThus, Janet makes "
    "\\(\\boxed{18}\\) dollars every day at the farmers' market.\n\n<|end_of_solution|>"
)
_HARMONY = (
    "<|channel|>analysis<|message|>We need to compute 16-3-4 = 9. 9*2 = 18. But maybe the answer is 20? "
    "No.<|end|><|start|>assistant<|channel|>commentary to=functions.calc <|constrain|>json<|message|>"
    '{"expr": "9*2"}<|call|><|start|>assistant<|channel|>final<|message|>**18**<|return|>'
)


@pytest.mark.parametrize(
    "text, finish, answer, error, in_reasoning",
    [
        (_BESPOKE, "stop", "18", None, "\\boxed{20}"),
        # the solution block is the answer region: nothing after <|end_of_solution|> is read
        (_BESPOKE + "\n\nRelated: the answer is 20.", "stop", "18", None, "16 - 3 - 4"),
        # an unclosed solution: the answer when the model stopped on its own; cut off by the limit, no answer
        (_BESPOKE.replace("<|end_of_solution|>", ""), "stop", "18", None, "16 - 3 - 4"),
        (_BESPOKE.replace("dollars every day at the farmers' market.\n\n<|end_of_solution|>", "dollars every"),
         "length", None, "no_answer", "16 - 3 - 4"),
        # a thought that forgot its closing token still ends where the solution opens
        (_BESPOKE.replace("<|end_of_thought|>", ""), "stop", "18", None, "\\boxed{20}"),
        (_HARMONY, "stop", "18", None, "maybe the answer is 20"),
        ("<|start|>assistant<|channel|>analysis<|message|>6*7 = 42, not 41.<|end|>"
         "<|start|>assistant<|channel|>final<|message|>The answer is 42.", "stop", "42", None, "not 41"),
        ("<|channel|>analysis<|message|>6*7 = 42, not 41.<|end|><|start|>assistant<|channel|>final<|message|>"
         "The answer is \\boxed{4", "length", None, "no_answer", "not 41"),
        ("<|channel|>analysis<|message|>6*7 = 42, so \\boxed{42}<|end|>", "stop", None, "no_answer", "6*7"),
        ("analysisThe user asks 6*7. That's 42, not 41.assistantcommentaryok.assistantfinalThe answer is **42**.",
         "stop", "42", None, "not 41"),
        ("[THINK]Ok, 2^10 = 1024, minus 24 is 1000. Maybe \\boxed{1024}?[/THINK]**Final answer:** $\\boxed{1000}$",
         "stop", "1000", None, "\\boxed{1024}"),
        ("<seed:think>\n12 * 12 = 144, hmm, 140?\n<seed:cot_budget_reflect>I have used 129 tokens, and there are "
         "383 tokens remaining for use.</seed:cot_budget_reflect>\nYes 144.\n</seed:think>The answer is 144.",
         "stop", "144", None, "383 tokens"),
        # Seed-OSS budget notes in the answer region are not answers either
        ("<seed:think>12*12</seed:think>So the area is 144.\n<seed:cot_budget_reflect>I have used 400 tokens."
         "</seed:cot_budget_reflect>\n#### 144", "stop", "144", None, "12*12"),
        ("<reasoning>\nThere are 3 boxes of 14 pencils: 3 * 14 = 42. Maybe 41?\n</reasoning>\n<answer>\n42\n</answer>",
         "stop", "42", None, "Maybe 41"),
        ("<thinking>\nThe sum 1+2+...+10 = 55, not 45.\n</thinking>\n\nThe sum is $\\boxed{55}$.", "stop", "55", None,
         "not 45"),
        ("<thought>Area = 6 * 7 = 42; perimeter 26 is not asked.</thought>\nTherefore, the area is 42.", "stop", "42",
         None, "perimeter 26"),
        # a reasoning field and a solution block in the content
        ("<|begin_of_solution|>\nSo \\boxed{7}.\n<|end_of_solution|>", "stop", "7", None, "3+4"),
    ],
)
def test_real_shaped_completions_of_each_family(text, finish, answer, error, in_reasoning):
    field = "3+4 = 7, or \\boxed{8}?" if text.startswith("<|begin_of_solution|>") else None
    p = parse(text, reasoning_field=field, finish_reason=finish)
    assert (p.answer, p.error) == (answer, error), p
    assert in_reasoning in (p.reasoning or ""), p


@pytest.mark.parametrize(
    "text, domain, answer, reasoning",
    [
        # a word tag that does not START the completion is text, not a reasoning delimiter
        ("Models such as Claude wrap their work in <thinking> tags. The answer is 5.", "math", "5", None),
        ("I used <thinking>, <thought> and <reasoning> before.\nThe answer is 6.", "math", "6", None),
        ("Here is the parser:\n```python\nOPEN = '<thinking>'\nCLOSE = '</thinking>'\n```", "code",
         "OPEN = '<thinking>'\nCLOSE = '</thinking>'\n", None),
        ("```xml\n<reasoning>\n  <step>1</step>\n</reasoning>\n```", "code",
         "<reasoning>\n  <step>1</step>\n</reasoning>\n", None),
        # after a real block, the same tags inside the answer's code or mid-sentence stay in the answer
        ("<thinking>plan: strip the tags, 3 cases</thinking>\n```python\ndef strip(s):\n"
         "    return s.replace('<thinking>', '').replace('</thinking>', '')\n```", "code",
         "def strip(s):\n    return s.replace('<thinking>', '').replace('</thinking>', '')\n",
         "plan: strip the tags, 3 cases"),
        ("<thinking>7 * 6 = 42</thinking>\nWe mention the `</thinking>` tag and the <thinking> tag in passing. "
         "The answer is 42.", "math", "42", "7 * 6 = 42"),
        # the reasoning that quotes its own closing tag ends at the last one, as <think> does
        ("<thought>I must end with </thought> at the end; 3 * 4 = 12, not 11.</thought> The answer is 12.", "math",
         "12", None),
    ],
)
def test_word_tags_are_delimiters_only_at_the_start(text, domain, answer, reasoning):
    p = parse(text, domain=domain, finish_reason="stop")
    assert (p.answer, p.error) == (answer, None), p
    if reasoning is None:
        assert p.reasoning is None or "not 11" in p.reasoning
    else:
        assert p.reasoning == reasoning


@pytest.mark.parametrize(
    "text, answer, error",
    [
        # nested and repeated blocks: the reasoning runs to the last closing tag, as for <think>
        ("<thinking>a \\boxed{1} <thinking>b \\boxed{2}</thinking> c</thinking>The answer is 5.", "5", None),
        ("<thinking>a 1</thinking>Hmm.\n<thinking>b \\boxed{2}</thinking>\nThe answer is 5.", "5", None),
        ("[THINK]a 1[/THINK]x[THINK]b \\boxed{2}[/THINK]The answer is 5.", "5", None),
        ("<|begin_of_thought|>a<|end_of_thought|><|begin_of_thought|>b 7<|end_of_thought|>#### 5", "5", None),
        # a second block that never closed: no answer (the 4 is reasoning)
        ("<thinking>a</thinking>The answer is 3.<thinking>no wait, \\boxed{4}", None, "unclosed_think"),
        ("<thinking>a</thinking>The answer is 3.\n<thinking>no wait, \\boxed{4}", None, "unclosed_think"),
        ("[THINK]a[/THINK]The answer is 3.[THINK]no wait, \\boxed{4}", None, "unclosed_think"),
        ("<seed:think>a</seed:think>The answer is 3.<seed:think>\\boxed{4}", None, "unclosed_think"),
        # mismatched: a <think> close still closes a <thinking> block; other mismatches never close
        ("<thinking>9 * 2 = 18, not 20</think>\nThe answer is 18.", "18", None),
        ("<thinking>9 * 2 = 18, not 20</thought>\nThe answer is 18.", None, "unclosed_think"),
        ("[THINK]9 * 2 = 18, not 20</think>\nThe answer is 18.", None, "unclosed_think"),
        ("<seed:think>9 * 2 = 18, not 20[/THINK]\nThe answer is 18.", None, "unclosed_think"),
        # closing tokens only, or in the wrong order
        ("[/THINK][/THINK]The answer is 5.", "5", None),
        ("<|end_of_thought|>The answer is 5.<|begin_of_thought|>", None, "unclosed_think"),
        ("</thinking>The answer is 5.", "5", None),  # a lone word closing tag is text
        ("<|end_of_solution|>The answer is 5.<|begin_of_solution|>", None, "no_answer"),  # the last block is empty
        ("<|begin_of_solution|><|end_of_solution|>The answer is 5.", None, "no_answer"),
        # harmony degenerate: headers without bodies, unknown channels, a final before more analysis
        ("<|channel|>final<|message|>The answer is 5.<|end|><|start|>assistant<|channel|>analysis<|message|>"
         "hmm \\boxed{6}", None, "unclosed_think"),
        ("<|channel|>final<|message|><|return|>", None, "no_answer"),
        ("<|channel|><|message|>The answer is 5.", "5", None),
        ("analysis of the problem shows the answer is 5.", "5", None),  # no "assistantfinal": plain text
    ],
)
def test_nested_repeated_and_mismatched_delimiters(text, answer, error):
    p = parse(text, finish_reason="stop")
    assert (p.answer, p.error) == (answer, error), p


@pytest.mark.parametrize(
    "junk",
    [
        "<thinking>" * 200_000,
        "</thinking>" * 200_000,
        "<thinking>" + "</thinking>x" * 100_000,
        "<thinking>" + "```\n" * 200_000 + "</thinking>" + "<thinking>" * 50_000,
        "<thinking>" + "`</thinking>`\n" * 100_000,
        "<thinking></thinking>" + ".<thinking>`" * 100_000,
        "<|channel|>" * 200_000 + "<|message|>",
        "<|channel|>analysis<|message|>" * 100_000,
        "<|channel|>a" + "x" * 1_000_000 + "<|message|>",
        "analysis" + "assistantfinal" * 100_000,
        "<|begin_of_thought|>" * 100_000 + "<|begin_of_solution|>" * 100_000,
        "<|begin_of_solution|>" * 100_000 + "<|end_of_solution|>" * 100_000,
        "[THINK]" * 100_000 + "[/THINK]" * 100_000,
        "<seed:think>" + "<seed:cot_budget_reflect>" * 100_000,
    ],
    ids=lambda j: f"{j[:24]!r}x{len(j)}",
)
def test_megabytes_of_delimiters_stay_fast(junk):
    t0 = time.perf_counter()
    for finish in ("stop", "length"):
        parse(junk, finish_reason=finish)
        parse(junk, domain="code", finish_reason=finish)
    assert time.perf_counter() - t0 < 2.0


def test_a_megabyte_of_reasoning_in_each_family_is_fast():
    body = "We compute 2+2 and keep going; maybe \\boxed{5}. " * 40_000  # ~2 MB
    t0 = time.perf_counter()
    for name, opening, closing in _FAMILIES:
        p = parse((opening or "") + body + closing + "The answer is \\boxed{4}.")
        assert p.answer == "4", name
    assert time.perf_counter() - t0 < 3.0


@pytest.mark.parametrize(
    "text, answer, source",
    [
        # a message or block that holds only the answer: its lone value is the answer
        ("<|channel|>analysis<|message|>41? no, 42.<|end|><|start|>assistant<|channel|>final<|message|>42", "42",
         "final_block"),
        ("analysisHalf of 2 is 1, not 2.assistantfinal$\\frac{1}{2}$", "\\frac{1}{2}", "final_block"),
        ("<|begin_of_thought|>So 41 or 42?<|end_of_thought|>\n<|begin_of_solution|>\n42\n<|end_of_solution|>", "42",
         "final_block"),
        ("<|channel|>final<|message|>(B)<|return|>", "(B)", "final_block"),
        ("<|channel|>analysis<|message|>x<|end|><|start|>assistant<|channel|>final<|message|>**42**", "42", "bold"),
        # prose, a hedge or a word is not a lone value
        ("<|channel|>final<|message|>Done.", None, None),
        ("<|channel|>final<|message|>Paris", None, None),
        ("<|channel|>final<|message|>probably 18", None, None),
        # a lone value outside such a block is not an answer (unchanged)
        ("<thinking>41?</thinking>\n42", None, None),
        ("42", None, None),
    ],
)
def test_a_lone_value_in_a_final_message_or_solution_block(text, answer, source):
    p = parse(text, finish_reason="stop")
    assert (p.answer, p.answer_source) == (answer, source), p


# --------------------------------------------------------------------------- held-out set 2: hedges after the answer


@pytest.mark.parametrize(
    "text",
    [
        # a second reading offered after the answer, in parentheses or as "; otherwise it is …"
        "So the result is one.\n</reasoning>\n**Answer:** one\n\n(If instead the other reading is meant, then 10.)",
        "**Answer:** 8\n\n(If instead the other reading is meant, then 80 turns.)",
        "**Answer:** $p - q$\n\n(If instead the other reading is meant, then $\\text{none}$.)",
        "**Answer:** (D)\n\n(If instead the other reading is meant, then E) 798.)",
        "\\boxed{5}\n\n(If the other reading is intended, the answer is 6.)",
        "If the problem counts the first case, the answer is seven; otherwise it is 8.",
        "If the problem counts the first case, the answer is $1+2\\sqrt{3}$; otherwise it is $2+2\\sqrt{3}$.",
        "If the problem counts the first case, the answer is $204_5$; otherwise it is $205_5$.",
        "If the problem counts the first case, the answer is 17; otherwise it is 5 cars.",
        "The answer is 12. Otherwise, if Sunday counts, the answer would be 14.",
        # "… is also defensible": a second answer the model will not rule out
        "Answer: (D), though A. $4,829 is also defensible if the last step is read differently.",
        "Answer: C. 9, though (B) is also defensible if the last step is read differently.",
        "\\boxed{42}, although 41 is also plausible.",
        # an "or" inside the box between two values with units
        "The final answer is $\\boxed{18 \\text{ points} \\text{ or } 180\\ \\mathrm{points}}$.",
        "\\boxed{18\\,\\mathrm{cm} \\text{ or } 20\\,\\mathrm{cm}}",
        "\\boxed{2 \\text{ hours} \\text{ or } 120 \\text{ minutes}}",
    ],
)
def test_a_second_reading_after_the_answer_is_a_hedge(text):
    p = parse(text, finish_reason="stop")
    assert p.answer is None and p.error == "hedged_answer", p


@pytest.mark.parametrize(
    "text, answer",
    [
        # the same value offered twice, or "either way" the same answer: not a hedge
        ("The answer is 18 (or eighteen).", "18"),
        ("\\boxed{18} (or eighteen)", "18"),
        ("Either way, the answer is 18.", "18"),
        ("The answer is 18 either way.", "18"),
        ("\\boxed{18}\n\n(If instead we count both readings, we still get 18.)", "18"),
        ("If the problem counts the first case, the answer is 7; otherwise it is also 7.", "7"),
        ("**Answer:** 18\n\n(If instead you meant the perimeter, that is a different question.)", "18"),
        ("The answer is 18. Otherwise the pattern would break.", "18"),
        # "or" in the prose before the final, a condition that is the method, unit words
        ("We could add or multiply; adding is right. The answer is 18.", "18"),
        ("Either add or subtract first.\n\n**Answer:** 18", "18"),
        ("If we subtract 3 from 21, the answer is 18.", "18"),
        ("\\boxed{18 \\text{ points}}", "18 \\text{ points}"),
        ("\\boxed{18\\ \\mathrm{points}}", "18\\ \\mathrm{points}"),
        ("The answer is 6 floors.", "6 floors"),
        ("Answer: 42. Note that 6 * 7 = 42 is also valid as a check.", "42"),
        ("\\boxed{x < -2 \\text{ or } x > 3}", "x < -2 \\text{ or } x > 3"),
        ("**Answer:** $x = 2 \\text{ or } x = 3$", "x = 2 \\text{ or } x = 3"),
        ("Answer: C. 9, though the first route is longer.", "C"),
    ],
)
def test_near_misses_of_a_second_reading_stay_answers(text, answer):
    p = parse(text, finish_reason="stop")
    assert (p.answer, p.error) == (answer, None), p


# --------------------------------------------------------------------------- held-out set 2: finals with no marker


@pytest.mark.parametrize(
    "content, answer",
    [
        # gpt-oss finals (the reasoning in the API's reasoning field): a whole bold line is the answer
        ("Plug the result back in to verify.\n\n**eight**", "eight"),
        ("Wait, re-read: it asks for the final quantity.\n\n**one hundred**", "one hundred"),
        ("Wait, re-read: it asks for the final quantity.\n\n**C**", "C"),
        ("Another route gives the same thing.\n\n**(B)**", "(B)"),
        ("Another route gives the same thing.\n\n**D. 4**", "D. 4"),
        ("Given numbers: 42, 3, 11.\n\n**D) $39**", "D) $39"),
        ("Given numbers: 5, 5.\n\n**Option 2**", "Option 2"),
        ("Another route gives the same thing.\n\n**√128**", "√128"),
        ("Check the arithmetic once more: consistent.\n\n**2⅙**", "2⅙"),
        ("Check the arithmetic once more: consistent.\n\n**x = 7 or x = 9**", "x = 7 or x = 9"),
        ("Let me set up the relation first.\n\n**(5, −2)**", "(5, −2)"),
        ("Plug the result back in to verify.\n\n**x ∈ {-5, 5}**", "x ∈ {-5, 5}"),
        ("Wait, re-read.\n\n**x = -6, y = 6**", "x = -6, y = 6"),
        ("Another route gives the same thing.\n\n**x₁ = -5, x₂ = 5**", "x₁ = -5, x₂ = 5"),
        ("Done.\n\n**Yes**", "Yes"),
        ("Compute each piece separately.\n\nThe answer is **1·10^-8**.", "1·10^-8"),
    ],
)
def test_a_whole_bold_last_line_is_the_answer(content, answer):
    p = parse(content, reasoning_field="We need 2+2. So 4? No: the count is as asked.", finish_reason="stop")
    assert (p.answer, p.error) == (answer, None), p


@pytest.mark.parametrize(
    "text",
    [
        "We are done.\n\n**Let me know if you need more help!**",
        "Here is the plan.\n\n**Step 2**",
        "**Summary**",
        "The first part is done.\n\n**Case 3: both even**",
        "<|channel|>final<|message|>**Paris**",
        "**Note:** 5 is prime.",
        "She has apples.\n\n**2 apples + 3 apples**",
        "<think>**18**</think>\nI could not finish.",
    ],
)
def test_a_bold_line_that_is_no_value_is_no_answer(text):
    p = parse(text, finish_reason="stop")
    assert (p.answer, p.error) == (None, "no_answer"), p


@pytest.mark.parametrize(
    "tail, answer",
    [
        # Gemini 2.5: display math under a final-answer heading, no \boxed
        ("**Final Answer:**\n$$ 65 $$", "65"),
        ("**Final Answer:**\n$$ 100 $$\n\nCheck: with 500, 200 the conditions hold. ✓", "100"),
        ("**Final Answer:**\n$$ (C) $$", "(C)"),
        ("**Final Answer:**\n$$ \\text{Option B} $$", "\\text{Option B}"),
        ("**Final Answer:**\n$$ A: 26 slices $$", "A: 26 slices"),
        ("**Final Answer:**\n$$ 2\\sqrt{3} $$", "2\\sqrt{3}"),
        ("**Final Answer:**\n\n\\[ 0.0625 \\]", "0.0625"),
        ("**Final Answer:**\n$$ \\begin{pmatrix} -3 & 4 \\\\ 0 & -3 \\end{pmatrix} $$",
         "\\begin{pmatrix} -3 & 4 \\\\ 0 & -3 \\end{pmatrix}"),
        ("**Final Answer:**\n**42**", "42"),
    ],
)
def test_display_math_under_a_final_answer_heading(tail, answer):
    text = "*   Let me set up the relation first.\n*   So the result is 7.\n\n" + tail
    p = parse(text, finish_reason="stop")
    assert (p.answer, p.error) == (answer, None), p


def test_a_final_answer_heading_with_nothing_after_it_is_no_answer():
    for t in ["**Final Answer:**\n", "**Final Answer:**\n$$ 65", "**Final Answer:**\n\n**"]:
        p = parse(t, finish_reason="stop")
        assert p.answer is None, (t, p)


# --------------------------------------------------------------------------- Kimi ◁think▷


@pytest.mark.parametrize(
    "text, answer",
    [
        ("◁think▷Given 2, 2, 2. First attempt: \\boxed{\\text{nine}}. Wait, that breaks a condition; redo it. "
         "So the result is 8.◁/think▷Given numbers: 2, 2, 2.\n\n$$\\boxed{8}$$", "8"),
        ("◁think▷First attempt: \\boxed{20}. Wait, redo it. So the result is 1890.◁/think▷Compute each piece."
         "\n\n**Answer:** $\\boxed{1890}$", "1890"),
        # the template opened the block: a lone closing token
        ("First attempt: \\boxed{B: 201}. Wait, redo it. So the result is (C).◁/think▷\n\n$$\\boxed{(C)}$$", "(C)"),
    ],
)
def test_kimi_reasoning_delimiters(text, answer):
    p = parse(text, finish_reason="stop")
    assert (p.answer, p.error, p.think_closed) == (answer, None, True), p
    assert "First attempt" in p.reasoning and "◁" not in p.reasoning


def test_kimi_block_that_never_closed_has_no_answer():
    p = parse("◁think▷So the result is \\boxed{8}", finish_reason="length")
    assert (p.answer, p.error) == (None, "truncated_in_reasoning"), p
    p = parse("◁think▷a◁/think▷The answer is 3.◁think▷no wait, \\boxed{4}", finish_reason="stop")
    assert (p.answer, p.error) == (None, "unclosed_think"), p
