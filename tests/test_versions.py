"""factory.versions on hand-made stores: the one baseline rule, recording, comparing, diversity figures."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from rich.console import Console

from factory.report import print_comparison
from factory.store import Store
from factory.versions import (STAGES, acceptance, baseline_version, collapse_drop, compare_versions, record_version,
                              text_diversity, version_figures, version_row)

EMPTY_FUNNEL = json.dumps({s: {} for s in STAGES})


def add_version(store: Store, v: int, kept: int = 0, published: str | None = None, diversity: dict | None = None):
    counts = {"candidates": kept, "kept": kept, "seeds": kept, "verified": kept}
    store.sql("INSERT INTO versions (version, config_hash, kept_hash, counts, funnel, diversity, published_revision) "
              "VALUES (?, 'c', ?, ?, ?, ?, ?)", [v, f"h{v}", json.dumps(counts), EMPTY_FUNNEL,
                                                 json.dumps(diversity or {"kept": kept}), published])


def add_refresh(store: Store, v: int, outcome: str):
    store.sql("INSERT INTO refreshes (refresh_id, version, outcome, exit_code) VALUES (?, ?, ?, 0)",
              [f"r{v}-{outcome}", v, outcome])


@pytest.fixture
def store(tmp_path: Path):
    with Store(tmp_path / "factory.duckdb") as s:
        yield s


@pytest.mark.parametrize("history, version, expected", [
    ([], 1, None),  # the first version: nothing to compare with
    ([(1, None, [])], 2, 1),  # nothing accepted yet: the version right before
    ([(1, None, []), (2, None, ["gates_failed"])], 3, 2),  # still nothing accepted: the one before, even a failed one
    ([(1, "sha1", []), (2, None, ["gates_failed"])], 3, 1),  # published beats a later failed version
    ([(1, None, ["passed"]), (2, None, ["gates_failed"]), (3, None, ["error"])], 4, 1),  # passed gates = accepted
    ([(1, "sha1", []), (2, None, ["passed"]), (3, None, [])], 4, 2),  # the LAST accepted, published or passed
    ([(1, None, ["nothing_new", "gates_failed"]), (2, None, [])], 3, 2),  # neither outcome accepts
    ([(1, None, []), (2, "sha2", []), (3, None, ["passed"])], 2, 1),  # only versions before it count
    ([(1, None, ["gates_failed", "passed"]), (2, None, [])], 3, 1),  # failed once, passed later (forced): accepted
])
def test_one_baseline_rule_last_accepted_else_previous(store, history, version, expected):
    for v, published, outcomes in history:
        add_version(store, v, kept=3, published=published)
        for outcome in outcomes:
            add_refresh(store, v, outcome)
    if version > len(history):
        add_version(store, version, kept=3)
    assert baseline_version(store, version) == expected


def test_acceptance_says_why(store):
    add_version(store, 1, published="abc")
    add_version(store, 2)
    add_version(store, 3)
    add_refresh(store, 2, "passed")
    add_refresh(store, 3, "gates_failed")
    assert [acceptance(store, v) for v in (1, 2, 3, 4)] == ["published", "passed", None, None]


def test_version_row_latest_missing_and_none(store):
    with pytest.raises(LookupError, match="no version yet"):
        version_row(store, None, "counts")
    add_version(store, 1, kept=2)
    add_version(store, 2, kept=5)
    assert version_row(store, None, "version")[0] == 2
    assert json.loads(version_row(store, 1, "counts")[1][0])["kept"] == 2
    with pytest.raises(LookupError, match="no version 7 in "):
        version_row(store, 7, "counts")


def _decide(store: Store, kept: list[tuple[str, str, bool, str]], rejected: list[tuple[str, str, str]]):
    """The temp tables the filter stage leaves: traces, selected, rejects."""
    rows = [(rid, seed, verified, text) for rid, seed, verified, text in kept] + \
           [(rid, "s-x", False, "dropped text") for rid, _, _ in rejected]
    store.sql("CREATE OR REPLACE TEMP TABLE traces (request_id VARCHAR, seed_id VARCHAR, verified BOOLEAN, "
              "reasoning VARCHAR, text VARCHAR)")
    for rid, seed, verified, text in rows:
        store.sql("INSERT INTO traces VALUES (?, ?, ?, ?, ?)", [rid, seed, verified, text, text])
    store.sql("CREATE OR REPLACE TEMP TABLE selected (request_id VARCHAR, seed_id VARCHAR, verified BOOLEAN)")
    for rid, seed, verified, _ in kept:
        store.sql("INSERT INTO selected VALUES (?, ?, ?)", [rid, seed, verified])
    store.sql("CREATE OR REPLACE TEMP TABLE rejects (request_id VARCHAR, stage VARCHAR, reason VARCHAR)")
    for rid, stage, reason in rejected:
        store.sql("INSERT INTO rejects VALUES (?, ?, ?)", [rid, stage, reason])


def test_record_version_is_new_only_when_the_corpus_or_config_changes(store):
    kept = [("r1", "s1", True, "add the two numbers to get five"), ("r2", "s2", False, "multiply them: twelve")]
    _decide(store, kept, [("r3", "verify", "wrong_answer"), ("r4", "custom_stage", "odd"), ("r5", "verify", "x")])
    first = record_version(store, "cfg-a", {"kept": 2, "seeds": 2, "mean_reasoning_words": 5.000000001},
                           {"near_dup_clusters": 0})
    assert first.new and first.version == 1
    assert first.counts == {"candidates": 5, "kept": 2, "seeds": 2, "verified": 1}
    # every stage in order (empty ones too), a stage a project's SQL invented after them
    assert list(first.funnel) == [*STAGES, "custom_stage"] and first.funnel["verify"] == {"wrong_answer": 1, "x": 1}
    assert first.diversity["mean_reasoning_words"] == 5.0 and "distinct_2" in first.diversity
    assert list(first.diversity)[-1] == "near_dup_clusters"
    again = record_version(store, "cfg-a", {"kept": 2, "seeds": 2}, {})
    assert not again.new and again.version == 1
    other_config = record_version(store, "cfg-b", {"kept": 2, "seeds": 2}, {})
    assert other_config.new and other_config.version == 2
    _decide(store, kept[:1], [("r2", "select", "not_selected")])
    smaller = record_version(store, "cfg-b", {"kept": 1, "seeds": 1}, {})
    assert smaller.new and smaller.version == 3
    assert store.sql("SELECT version, count(*) FROM kept GROUP BY ALL ORDER BY 1") == [(1, 2), (2, 2), (3, 1)]
    assert store.sql("SELECT count(*) FROM funnel WHERE version = 3") == [(1,)]


def test_an_empty_version_compares_and_prints_na_not_zero_or_none(store):
    _decide(store, [("r1", "s1", True, "some reasoning words here")], [])
    record_version(store, "c", {"kept": 1, "seeds": 1, "mean_reasoning_words": 4.0, "std_reasoning_words": 0.0,
                                "reasoning_words_p10_p50_p90": [4.0, 4.0, 4.0]}, {})
    _decide(store, [], [("r1", "quality", "truncated")])
    record_version(store, "c", {"kept": 0, "seeds": 0, "mean_reasoning_words": None, "std_reasoning_words": None,
                                "reasoning_words_p10_p50_p90": None}, {})
    empty = version_figures(store, 2)
    assert empty["kept"] == 0 and empty["verified_rate"] == 0.0 and empty["length"]["mean"] is None
    first = compare_versions(store, None, 1)
    assert first["old"] is None and first["figures"]["old"] is None and "diversity_gate" not in first
    c = compare_versions(store, 1, 2)
    assert c["traces"] == {"old": 1, "new": 0, "added": 0, "removed": 1} and c["diversity_gate_words"] == 0
    assert all(d["drop"] is None for k, d in c["diversity_gate"].items() if k != "unique_trace_share")
    out = io.StringIO()
    print_comparison(c, [], Console(file=out, width=200))
    text = out.getvalue()
    assert "None" not in text and "0.0/0.0/0.0" not in text and "n/a" in text


def test_collapse_drop_direction_and_edges():
    assert collapse_drop("distinct_2", 0.5, 0.25) == 0.5  # fell: towards collapse
    assert collapse_drop("distinct_2", 0.5, 0.75) == -0.5  # rose: away from it
    assert collapse_drop("compression_ratio", 2.0, 3.0) == 0.5  # more compressible: more repetitive
    assert collapse_drop("mean_reasoning_words", 10, 5) is None  # no direction
    assert collapse_drop("distinct_2", 0, 0.5) is None and collapse_drop("distinct_2", None, 0.5) is None


def test_text_diversity_on_nothing_and_on_odd_text():
    assert text_diversity([]) == {"distinct_1": 0.0, "distinct_2": 0.0, "distinct_3": 0.0, "compression_ratio": 0.0}
    odd = text_diversity(["", "∑ x² = 1 — ok", "数学 数学 数学"])
    assert 0 < odd["distinct_1"] <= 1 and odd["compression_ratio"] > 0
