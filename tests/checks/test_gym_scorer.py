"""checks/gym.py: entries as JSON, the raw answer tag, the hardening of a scorer's eval, and the worker pool."""

from __future__ import annotations

import json
import time

import pytest

reasoning_gym = pytest.importorskip("reasoning_gym")

from factory.checks.gym import (answer_tag_text, decode_entry, encode_entry, safe_eval, score_many,  # noqa: E402
                                unsafe_expression)


def entry(task: str, index: int = 0, **config):
    return reasoning_gym.create_dataset(task, size=8, seed=5, **config)[index]


@pytest.mark.parametrize("task", ["arc_agi", "rearc", "graph_color", "codeio", "basic_arithmetic", "zebra_puzzles"])
def test_an_entry_survives_json_and_scores_as_before(task):
    # ARC's scorer compares with a tuple of tuples; graph_color keys its colouring by node number
    dataset = reasoning_gym.create_dataset(task, size=4, seed=3)
    for i in range(4):
        e = dataset[i]
        back = decode_entry(json.loads(json.dumps(encode_entry(e))))
        assert back == e
        if e["answer"] is not None:
            assert dataset.score_answer(e["answer"], back) == dataset.score_answer(e["answer"], e) == 1.0


def test_the_answer_tag_is_read_after_the_reasoning_only():
    assert answer_tag_text("<think>maybe <answer>3</answer></think>\n<answer> Smith, done. </answer>") == "Smith, done."
    assert answer_tag_text("<think>so <answer>3</answer></think> no tag here") is None
    assert answer_tag_text("<answer>1</answer> then <answer>  </answer> and <answer>2\n3</answer>") == "2\n3"
    assert answer_tag_text("<answer>5</answer> no, <answer>6") == "6" and answer_tag_text(None) is None


def test_safe_eval_reads_literals_and_arithmetic_and_nothing_else():
    assert safe_eval("[[1, 0], [0, 1]]") == [[1, 0], [0, 1]]
    assert safe_eval("['-5.0', '3']") == ["-5.0", "3"] and safe_eval("(0x3a >> 2) - ~5") == (0x3a >> 2) + 6
    for hostile in ("__import__('os').system('true')", "open('/etc/passwd')", "(lambda: 1)()", "x", "2**99999",
                    "[].__class__"):
        with pytest.raises((ValueError, SyntaxError)):
            safe_eval(hostile)
    assert unsafe_expression("3*x**2 + sqrt(2)/7 - exp(1.5)") is None
    assert unsafe_expression("open('f', 'w')") and unsafe_expression("().__class__") and unsafe_expression("x.evalf()")


def test_nothing_to_score_starts_no_worker():
    assert list(score_many(iter(()))) == []


@pytest.mark.slow
def test_the_pool_scores_with_the_tasks_scorer_and_survives_hostile_answers(tmp_path):
    marker = tmp_path / "pwned"
    matrix, countdown, words = entry("binary_matrix"), entry("countdown"), entry("word_sorting")
    right_words = words["answer"]
    wrong_words = ", ".join(reversed(right_words.split(", ")))
    items = [
        ("matrix_right", "binary_matrix", {}, encode_entry(matrix), {"parsed": matrix["answer"]}),
        # binary_matrix eval()s an answer that is not the grid; countdown hands it to sympy's parse_expr
        ("matrix_eval", "binary_matrix", {}, encode_entry(matrix),
         {"parsed": f"__import__('os').system('touch {marker}')"}),
        ("matrix_open", "binary_matrix", {}, encode_entry(matrix), {"parsed": f"open('{marker}', 'w')"}),
        ("countdown_open", "countdown", {}, encode_entry(countdown), {"parsed": f"open('{marker}', 'w')"}),
        ("countdown_hang", "countdown", {}, encode_entry(countdown), {"parsed": "9**9**9**9"}),
        ("countdown_right", "countdown", {}, encode_entry(countdown), {"parsed": countdown["answer"]}),
        ("words_wrong", "word_sorting", {}, encode_entry(words), {"parsed": wrong_words}),
        # the better of two readings of one final answer counts
        ("words_tag", "word_sorting", {}, encode_entry(words), {"parsed": wrong_words, "answer_tag": right_words}),
        ("bad_settings", "word_sorting", {"no_such_setting": 1}, encode_entry(words), {"parsed": right_words}),
        ("no_answer", "word_sorting", {}, encode_entry(words), {"parsed": " ", "answer_tag": None}),
    ]
    started = time.monotonic()
    got = {key: (passed, reason, json.loads(detail)) for key, passed, reason, detail in
           score_many(items, timeout_s=2.0, workers=2)}
    assert time.monotonic() - started < 60
    assert {k: (p, r) for k, (p, r, _) in got.items()} == {
        "matrix_right": (True, "gym_score"), "matrix_eval": (False, "gym_wrong"), "matrix_open": (False, "gym_wrong"),
        "countdown_open": (False, "gym_wrong"), "countdown_hang": (False, "gym_timeout"),
        "countdown_right": (True, "gym_score"), "words_wrong": (False, "gym_wrong"), "words_tag": (True, "gym_score"),
        "bad_settings": (False, "gym_error"), "no_answer": (False, "gym_error")}
    assert not marker.exists()
    assert got["words_tag"][2]["reading"] == "answer_tag" and got["matrix_right"][2]["score"] == 1.0
    assert "no_such_setting" in got["bad_settings"][2]["error"]
    # a partial score (all words but the last in place) passes only as far as min_score allows
    partial = [("p", "word_sorting", {}, encode_entry(words), {"parsed": right_words.rsplit(", ", 1)[0]})]
    (_, strict, _, detail), = score_many(partial, timeout_s=5.0, workers=1)
    score = json.loads(detail)["score"]
    assert 0 < score < 1 and not strict
    (_, lenient, reason, _), = score_many(partial, timeout_s=5.0, workers=1, min_score=score - 1e-6)
    assert lenient and reason == "gym_score"
