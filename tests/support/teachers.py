"""Fake teachers shared by the tests: canned replies, and a history of what they were asked.

`CannedTeacher` answers every request with one fixed text (and fails chosen samples);
`ScriptedTeacher` answers GSM8K and code seeds right, wrong, truncated or duplicated by sample index.
Pass them to `build_dataset(cfg, teachers={name: teacher})`; each records the request ids it saw.
"""

from __future__ import annotations

import json
from pathlib import Path

from factory.records import Response

ROOT = Path(__file__).resolve().parents[2]
GSM8K = [json.loads(line) for line in open(ROOT / "data" / "gsm8k_train_sample.jsonl")][:6]
GSM8K_TEST = json.loads(open(ROOT / "data" / "benchmarks" / "gsm8k_test.jsonl").readline())
CODE = [json.loads(line) for line in open(ROOT / "data" / "code_sample.jsonl")][:2]
GOOD_CODE = {"add_all": "def add_all(xs):\n    return sum(xs)\n", "is_palindrome": "def is_palindrome(s):\n    t = [c.lower() for c in s if c.isalpha()]\n    return t == t[::-1]\n"}


def reference(problem: str) -> str | None:
    for row in GSM8K + [GSM8K_TEST]:
        if row["question"].strip().lower() in problem.lower():
            return row["answer"].split("####")[-1].strip().replace(",", "")
    return None


class ScriptedTeacher:
    """Sample 0 right, 1 wrong, 2 truncated, 3 a copy of sample 0 (math); code: right or failing."""

    def __init__(self):
        self.name, self.model = "scripted", "scripted-model"
        self.seen: list[str] = []

    def generate(self, requests):
        for r in requests:
            self.seen.append(r.request_id)
            user = r.messages[-1]["content"]
            if "```python" in user:
                entry = next(c["entry_point"] for c in CODE if c["entry_point"] in user)
                body = GOOD_CODE[entry] if r.sample_index % 2 == 0 else f"def {entry}(*a):\n    return None\n"
                text = f"<think>I will write {entry} carefully, sample {r.sample_index}.</think>\n\n```python\n{body}```"
                yield Response(r.request_id, r.teacher, r.model, text=text, finish_reason="stop", completion_tokens=30)
                continue
            ref = reference(user) or "0"
            steps = " ".join(f"step {k} of the work for sample {r.sample_index % 3} on {ref}" for k in range(4))
            if r.sample_index in (0, 3):
                text, finish = f"<think>{steps}. So the total is {ref}.</think>\n\nThe answer is \\boxed{{{ref}}}.", "stop"
            elif r.sample_index == 1:
                text, finish = f"<think>{steps} but I slipped.</think>\n\nThe answer is \\boxed{{{int(ref) + 1}}}.", "stop"
            else:
                text, finish = f"<think>{steps} and then {ref}", "length"
            yield Response(r.request_id, r.teacher, r.model, text=text, finish_reason=finish, completion_tokens=40)


class CannedTeacher:
    """Answers every request with a fixed text; fails the ones whose sample index is in `fail`."""

    def __init__(self, name="canned", fail=()):
        self.name, self.model, self.fail = name, "canned-model", set(fail)
        self.seen: list[str] = []

    def generate(self, requests):
        for r in requests:
            self.seen.append(r.request_id)
            if r.sample_index in self.fail:
                yield Response(r.request_id, r.teacher, r.model, error="http_500", attempts=3)
            else:
                yield Response(r.request_id, r.teacher, r.model, text=f"<think>ok</think> \\boxed{{{r.sample_index}}}",
                               finish_reason="stop", prompt_tokens=10, completion_tokens=5, latency_s=0.01)
