"""Versions of the curated corpus: recording one, the version a new one is compared with, comparing
two, and the diversity figures that say whether a corpus is collapsing.

The baseline (one rule for the dataset card's "changes", the refresh gates and anything else that
compares): a version is compared with the last ACCEPTED version before it, one that was published
to the Hub or passed a refresh's gates; when none was accepted yet, with the version right before
it; the first version is compared with nothing. A version that failed its gates is never the
baseline while an accepted one exists, so a slowly collapsing corpus cannot walk the bar down one
small step at a time.

The filter stage records versions; export, hub, refresh and report read them. This module reads
and writes only the store: nothing here knows how a version was made or where it goes.
"""

from __future__ import annotations

import hashlib
import json
import re
import zlib
from dataclasses import dataclass
from typing import Any

from factory.errors import VersionError
from factory.store import Store

STAGES = ("student", "parse", "quality", "verify", "dedup", "decontam", "select")  # the funnel, in order
# refresh outcomes that accept a version; a version published by `factory publish` has versions.published_revision
ACCEPTED = ("published", "passed")
# the text figures measured on word-matched samples when two versions are compared
TEXT_FIGURES = ("distinct_1", "distinct_2", "distinct_3", "compression_ratio")
SAMPLE_WORDS = 200_000  # text diversity figures are measured on at most this many words of each version
# the way each diversity figure moves as a corpus collapses: True = higher is more diverse
MORE_DIVERSE_WHEN_HIGHER = {"distinct_1": True, "distinct_2": True, "distinct_3": True, "answer_spread": True,
                            "unique_trace_share": True, "compression_ratio": False}
_WORD = re.compile(r"\w+")


# -- reading and recording ------------------------------------------------------------------------

def version_row(store: Store, version: int | None, columns: str) -> tuple[int, tuple]:
    """(version, its `columns` from `versions`); None: the latest. LookupError: a one-line reason."""
    if version is None:
        version = store.scalar("SELECT max(version) FROM versions")
        if version is None:
            raise VersionError("no version yet: run `factory filter` (or `factory build dataset`) first")
    rows = store.sql(f"SELECT {columns} FROM versions WHERE version = ?", [version])
    if not rows:
        raise VersionError(f"no version {version} in {store.path}")
    return version, rows[0]


@dataclass
class VersionRecord:
    version: int
    new: bool  # False: the same corpus under the same config as the last version, which is returned
    counts: dict[str, int]  # candidates, kept, seeds, verified
    funnel: dict[str, dict[str, int]]  # stage -> reason -> traces
    diversity: dict[str, Any]


def record_version(store: Store, config_hash: str, figures: dict[str, Any], clusters: dict[str, int],
                   stages: tuple[str, ...] = STAGES) -> VersionRecord:
    """Record the filter stage's decision (the temp tables `traces`, `selected` and `rejects`) as a new
    version: counts, the funnel, diversity (`figures` from filters/diversity.sql, the text figures of the
    kept traces, then the near-duplicate `clusters`) and the kept rows. The funnel lists the `stages`
    that ran (the student's only when one is configured). The same kept traces under the same config
    hash as the last version make no new version."""
    candidates = store.scalar("SELECT count(*) FROM traces")
    funnel: dict[str, dict[str, int]] = {s: {} for s in stages}
    for stage, reason, n in store.sql("SELECT stage, reason, count(*) FROM rejects GROUP BY ALL ORDER BY 1, 3 DESC"):
        funnel.setdefault(stage, {})[reason] = n
    diversity = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in figures.items()}
    diversity = json.loads(json.dumps(diversity, default=lambda o: dict(o) if hasattr(o, "items") else str(o)))
    texts = [r[0] for r in store.sql("SELECT coalesce(reasoning, text) FROM traces JOIN selected USING (request_id)")]
    diversity.update(text_diversity(texts))
    diversity.update(clusters)
    kept_ids = [r[0] for r in store.sql("SELECT request_id FROM selected ORDER BY request_id")]
    kept_hash = hashlib.sha256("\n".join(kept_ids).encode()).hexdigest()[:16]
    counts = {"candidates": candidates, "kept": len(kept_ids), "seeds": diversity.get("seeds"),
              "verified": store.scalar("SELECT count(*) FROM selected WHERE verified")}
    last = store.sql("SELECT version, kept_hash, config_hash FROM versions ORDER BY version DESC LIMIT 1")
    if last and last[0][1] == kept_hash and last[0][2] == config_hash:
        return VersionRecord(last[0][0], False, counts, funnel, diversity)  # same corpus, same config
    version = last[0][0] + 1 if last else 1
    store.sql("INSERT INTO versions (version, config_hash, kept_hash, counts, funnel, diversity) "
              "VALUES (?, ?, ?, ?, ?, ?)",
              [version, config_hash, kept_hash, json.dumps(counts), json.dumps(funnel), json.dumps(diversity)])
    store.sql("INSERT INTO kept SELECT ?, request_id, seed_id, verified FROM selected", [version])
    store.sql("INSERT INTO funnel SELECT ?, request_id, stage, reason FROM rejects", [version])
    return VersionRecord(version, True, counts, funnel, diversity)


# -- the baseline -----------------------------------------------------------------------------------

def acceptance(store: Store, version: int) -> str | None:
    """'published' (on the Hub), 'passed' (a refresh's gates), or None: not accepted."""
    if store.scalar("SELECT count(*) FROM versions WHERE version = ? AND published_revision IS NOT NULL", [version]):
        return "published"
    outcomes = ", ".join(f"'{o}'" for o in ACCEPTED)
    if store.scalar(f"SELECT count(*) FROM refreshes WHERE version = ? AND outcome IN ({outcomes})", [version]):
        return "passed"
    return None


def baseline_version(store: Store, version: int) -> int | None:
    """What `version` is compared with: the last accepted version before it (published, or passed a
    refresh's gates), else the version right before it; None for the first version."""
    outcomes = ", ".join(f"'{o}'" for o in ACCEPTED)
    accepted = store.scalar(f"""
        SELECT max(version) FROM versions WHERE version < $1 AND (published_revision IS NOT NULL
            OR version IN (SELECT version FROM refreshes WHERE outcome IN ({outcomes})))""", [version])
    return accepted if accepted is not None else store.scalar("SELECT max(version) FROM versions WHERE version < ?",
                                                              [version])


# -- comparing ------------------------------------------------------------------------------------

def version_figures(store: Store, version: int) -> dict[str, Any]:
    """What the gates and the comparison read of one version: size, verified rate, contamination,
    the share of unique traces and the length distribution."""
    counts, funnel, diversity = (json.loads(x) for x in store.sql(
        "SELECT counts, funnel, diversity FROM versions WHERE version = ?", [version])[0])
    kept = counts["kept"]
    # traces that reached trace dedup, and how many of them were (near-)duplicates of another
    early = sum(sum(funnel.get(s, {}).values()) for s in ("parse", "quality", "verify"))
    dedup = funnel.get("dedup", {})
    reached = counts["candidates"] - early - dedup.get("duplicate_problem", 0) - dedup.get("near_duplicate_problem", 0)
    dups = dedup.get("duplicate_trace", 0) + dedup.get("near_duplicate_trace", 0)
    # an empty version has no lengths: None (printed n/a), never a made-up 0
    p10, p50, p90 = (None if x is None else round(x, 1)
                     for x in diversity.get("reasoning_words_p10_p50_p90") or (None, None, None))
    return {
        "kept": kept, "seeds": counts["seeds"], "candidates": counts["candidates"],
        "verified_rate": round(counts["verified"] / kept, 4) if kept else 0.0,
        # the gate reads what the version would ship: kept traces whose problem or trace matched a
        # benchmark (the shipped filters drop those, so this is 0 unless a project's filters/ let them
        # through); how many candidates the decontamination step dropped is shown beside it
        "contamination": store.scalar("""SELECT count(*) FROM kept k WHERE k.version = ? AND EXISTS (
            SELECT 1 FROM contamination c WHERE c.id = k.request_id OR c.id = k.seed_id)""", [version]),
        "contamination_dropped": sum(funnel.get("decontam", {}).values()),
        "unique_trace_share": round(1 - dups / reached, 4) if reached > 0 else None,
        "near_dup_clusters": diversity.get("near_dup_clusters"),
        "length": {"mean": _rounded(diversity.get("mean_reasoning_words")),
                   "std": _rounded(diversity.get("std_reasoning_words")), "p10": p10, "p50": p50, "p90": p90},
    }


def _rounded(x) -> float | None:
    return None if x is None else round(x, 1)


def compare_versions(store: Store, old: int | None, new: int) -> dict[str, Any]:
    """`new` against `old` (None: nothing to compare with, only new's figures):
    - seeds / traces kept by each, added and removed; the verified rate and its change;
    - `diversity`: every numeric figure stored with the versions, old vs new (raw: distinct-n also
      falls as a corpus grows);
    - `figures`: each version's `version_figures`;
    - `diversity_gate`: the text figures measured on the same number of words of each version (the
      smaller version's, at most SAMPLE_WORDS, in a fixed random order) and the unique-trace share,
      each with its relative `drop` towards collapse; `diversity_gate_words` is that number of words.
    """
    after = version_figures(store, new)
    if old is None:
        return {"old": None, "new": new, "figures": {"old": None, "new": after}}
    info = {}
    for v in (old, new):
        row = store.sql("SELECT counts, diversity, published_revision FROM versions WHERE version = ?", [v])
        if not row:
            raise VersionError(f"no version {v} in {store.path}")
        info[v] = (json.loads(row[0][0]), json.loads(row[0][1]), row[0][2])

    def added(column: str, a: int, b: int) -> int:  # distinct `column` values kept in b but not in a
        return store.scalar(f"SELECT count(DISTINCT {column}) FROM kept WHERE version = ? AND {column} NOT IN "
                            f"(SELECT {column} FROM kept WHERE version = ?)", [b, a])

    def kept(column: str, v: int) -> int:
        return store.scalar(f"SELECT count(DISTINCT {column}) FROM kept WHERE version = ?", [v])

    def rate(counts: dict) -> float | None:
        return round(counts.get("verified", 0) / counts["kept"], 4) if counts.get("kept") else None

    (c_old, d_old, rev_old), (c_new, d_new, _) = info[old], info[new]
    out: dict[str, Any] = {"old": old, "new": new, "old_published_revision": rev_old,
                           "old_accepted": acceptance(store, old)}
    for name, column in (("seeds", "seed_id"), ("traces", "request_id")):
        out[name] = {"old": kept(column, old), "new": kept(column, new),
                     "added": added(column, old, new), "removed": added(column, new, old)}
    r_old, r_new = rate(c_old), rate(c_new)
    out["verified_rate"] = {"old": r_old, "new": r_new,
                            "change": None if None in (r_old, r_new) else round(r_new - r_old, 4)}
    out["diversity"] = {}
    for key in d_new:
        a, b = d_old.get(key), d_new[key]
        if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(b, bool):
            out["diversity"][key] = {"old": a, "new": b, "change": round(b - a, 4),
                                     "relative": round((b - a) / abs(a), 4) if a else None}
    before = version_figures(store, old)
    out["figures"] = {"old": before, "new": after}
    samples = [_sample(store, v) for v in (old, new)]
    n = min(sum(map(len, t)) for t in samples)
    sized = [text_diversity(_first_words(t, n)) if n else {} for t in samples]
    gate = {k: {"old": sized[0].get(k), "new": sized[1].get(k)} for k in TEXT_FIGURES}
    gate["unique_trace_share"] = {"old": before["unique_trace_share"], "new": after["unique_trace_share"]}
    for k, d in gate.items():
        drop = collapse_drop(k, d["old"], d["new"])
        d["drop"] = None if drop is None else round(drop, 4)
    out["diversity_gate"] = gate
    out["diversity_gate_words"] = n
    return out


def _sample(store: Store, version: int, words: int = SAMPLE_WORDS) -> list[list[str]]:
    """A version's kept traces as word lists, until `words` words; request ids are content hashes,
    so their order is a fixed random order."""
    out, total = [], 0
    with store.con.cursor() as cur:
        reader = cur.sql("""SELECT coalesce(p.reasoning, s.text) FROM kept k JOIN parsed p USING (request_id)
                            JOIN responses s USING (request_id) WHERE k.version = ? ORDER BY k.request_id""",
                         params=[version]).to_arrow_reader(1024)
        for batch in reader:
            for text in batch.column(0).to_pylist():
                out.append((text or "").split())
                total += len(out[-1])
                if total >= words:
                    return out
    return out


def _first_words(traces: list[list[str]], budget: int) -> list[str]:
    out = []
    for words in traces:
        if budget <= 0:
            break
        out.append(" ".join(words[:budget]))
        budget -= len(words)
    return out


# -- diversity figures ----------------------------------------------------------------------------

def text_diversity(texts: list[str]) -> dict[str, float]:
    """distinct-1/2/3 (unique n-grams / all n-grams) and the compression ratio (raw / zlib) of the corpus."""
    tokens = [_WORD.findall(t.lower()) for t in texts]
    out = {}
    for n in (1, 2, 3):
        grams = [tuple(ws[i:i + n]) for ws in tokens for i in range(len(ws) - n + 1)]
        out[f"distinct_{n}"] = round(len(set(grams)) / len(grams), 4) if grams else 0.0
    raw = "\n".join(texts).encode()
    out["compression_ratio"] = round(len(raw) / len(zlib.compress(raw, 6)), 4) if raw else 0.0
    return out


def collapse_drop(name: str, old, new) -> float | None:
    """How far a diversity figure moved towards collapse, relative to `old` (negative: away from it);
    None for a figure without such a direction, or without two values to compare (old > 0)."""
    higher = MORE_DIVERSE_WHEN_HIGHER.get(name)
    if higher is None or not isinstance(old, (int, float)) or not isinstance(new, (int, float)) or old <= 0:
        return None
    return ((old - new) if higher else (new - old)) / old
