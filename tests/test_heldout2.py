"""The second held-out fidelity set (benchmarks/heldout2.py) on a small subset: precision of `verified` only.

Every shape of tests/support/heldout2/ (MetaMathQA, Orca-Math, OpenMathInstruct-2, DeepScaleR, Big-Math,
Skywork-OR1, NuminaMath cn_k12/amc_aime, Omni-MATH, MMLU, MMLU-Pro, GPQA, ARC, GSM8K with units, an HF
save_to_disk folder) is built and filtered with its first seeds, the scripted teacher answering in 2025-2026
reasoning-model styles; the truth of each completion was fixed when it was written.

Precision (P >= 0.99: a wrong, truncated or hedged trace must not pass 'verify') and recall (R >= 0.90 of the
right ones; the full set measures 0.939, its misses are listed in benchmarks/README.md, "heldout2.py"). Full
report: `python benchmarks/heldout2.py`.
"""

from __future__ import annotations

import pytest
from support.benchmarks import load_benchmark

SEEDS_PER_SHAPE = 6
MIN_PRECISION = 0.99
MIN_RECALL = 0.90


@pytest.mark.slow
def test_heldout2_subset_verifies_no_wrong_trace_and_most_right_ones(tmp_path):
    h2 = load_benchmark("heldout2")
    shapes, completions, _ = h2.load_heldout2(h2.DATA_DIR)
    rows, failures = [], {}
    for shape in shapes:
        got, failure, _ = h2.run_shape(shape, completions[shape["name"]], tmp_path, h2.DATA_DIR, SEEDS_PER_SHAPE)
        rows += got
        if failure:
            failures[shape["name"]] = failure
    assert not failures, failures
    assert len(rows) >= len(shapes) * SEEDS_PER_SHAPE * h2.SAMPLES * 0.95
    _, right, tp, fp = h2.precision_recall(rows)
    false_passes = [(r["shape"], r["style"], r["label"], r["cause"], r["parsed"], r["reference"])
                    for r in rows if r["verified"] and r["label"] != "right"]
    assert tp / (tp + fp) >= MIN_PRECISION, false_passes
    missed = [(r["shape"], r["style"], r["form"], r["parsed"], r["reference"])
              for r in rows if r["label"] == "right" and not r["verified"]]
    assert tp / right >= MIN_RECALL, missed
