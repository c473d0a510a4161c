"""Decontamination: how much of a benchmark item (GSM8K test, MATH-500, HumanEval, ...) a text holds.

Matching works on several *views* of each text, all tokenised like the MinHash shingles
(lowercase; every run of non-alphanumerics -- whitespace, punctuation, underscore --
separates tokens):

``strict``  numbers kept. Used for tiny items only.
``lower``   every number (``12``, ``3.5``, ``1,000``) becomes one placeholder token:
            catches changed numbers, added prefixes, spacing and case changes.
``names``   additionally, before lowercasing, every capitalised word (``Natalia``, but
            also ``How``) and every identifier directly followed by ``(`` (a function
            name) becomes a placeholder: catches swapped names and renamed functions.

Every (view, n) is a *channel*: 13- and 8-grams (``ns``) of every item in ``lower`` and
``names``; and for short items (at most ``short_item_tokens`` = 32 tokens), whose 8-grams are
too few and too long to survive a dropped sentence or one swapped word, ``lower`` 5-grams
(``short_n``) and ``strict`` 3-grams (numbers kept: they make a one-line item specific).
No small-n ``names`` channel: with names and numbers gone a short item is mostly template. An n-gram found in
``max_item_df`` (3) or more benchmark items is boilerplate ("express your answer as a
common fraction", "from typing import list def") and is left out of the index: it never
counts as shared, and an item's size counts only the tokens its other n-grams cover.

For a (text, item) pair and one channel, the shared n-grams cover ``covered`` of the
item's tokens (the union of their token spans, from the positions kept in the index):

    item share = covered / item tokens          (how much of the item the text holds)
    text share = covered / text tokens          (how much of the text is the item)

The pair is a hit when, in some channel:

* item share >= ``min_coverage[n]`` (0.55 for 13-grams, 0.7 for 8-grams, 0.7 for
  5-grams, 0.65 for strict 3-grams) and the shared n-grams are at least 2 -- or one n-gram whose span alone covers
  ``single_span`` (0.8) of the item: one shared 13-gram between two problems is
  boilerplate, unless it is most of a short item;
* or the text is a cut-down item: text share >= 0.8 and item share >= 0.5 (a sentence
  dropped), with at least 8 covered tokens;
* and, in a short-item channel, the covered tokens hold at least ``min_words`` (3) content
  words (not a placeholder, a single character or a function word like "the", "find"), so
  a one-line template ("find the roots of x^2 + 0x + 0") does not match every instance.

Tiny items (fewer than ``n`` = max(ns) tokens in the ``strict`` view, e.g. "Compute
$\\dbinom{8}{4}$.") also match verbatim (channel "short/strict"): all their strict 3-grams
(the whole token sequence if shorter than 3), boilerplate or not, must occur in the text.
A changed number or swapped word in an item of under ~8 words is not caught: there it makes
a different problem as often as a disguised copy.

A hit's score is the item share of its best channel (1.0 for the strict channel). Thresholds
were tuned on ``benchmarks/decontam.py``'s planted set (seed 0) and checked on seeds 1-4 and
on hand-written competition problems that share boilerplate with MATH-500.

The n-gram join runs in DuckDB (``method="duckdb"``: the benchmark n-gram table, built
once, joined with the texts' n-grams) or as plain Python dict lookups (``method="python"``);
both return the same matched (text, item, channel, position) rows, hence the same hits.
"""

from __future__ import annotations

import re
import uuid
from collections import defaultdict
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from factory.checks.minhash import _M64, _mix64, _tokenise

__all__ = ["Hit", "Decontaminator", "views", "VIEWS"]

# bump when the matching rules change: stores re-check every text against the new rules
RULES_VERSION = 2
VIEWS = ("strict", "lower", "names")
_NUM = re.compile(r"\d+(?:[.,]\d+)*")
_CAP = re.compile(r"\b[A-Z][a-z]+\b|\b[A-Za-z_]\w*(?=\()")
NUM_TOKEN = "0"
NAME_TOKEN = "qzname"
SHORT_GRAM = 3
SHORT_N = 5
SHORT_ITEM_TOKENS = 32
MAX_ITEM_DF = 3
#: item share needed per n (tuned on benchmarks/decontam.py's planted set, seeds 0-4)
DEFAULT_MIN_COVERAGE = {13: 0.55, 8: 0.7, 5: 0.7, 3: 0.65}
DEFAULT_CUT_DOWN = (0.8, 0.5)  # (text share, item share)
SINGLE_SPAN = 0.8
MIN_CUT_TOKENS = 8
MIN_WORDS = 3
# words that say nothing about which problem a text is (they do not count as content words)
_FUNCTION_WORDS = ("the of is and to in that what if for be are by with as at on an it its this how many "
                   "find compute let there all which than then from or not each has have can will when "
                   "does do value number answer express your frac").split()
_KEY_BITS = 41  # n-gram hash bits kept in a join key
_JOIN_BITS = 44  # join key = channel (3 bits) << 41 | hash bits
_ITEM_BITS = 20  # items per index < 2**20 (the join key and the item share one uint64 for the DF count)


def views(text: str) -> dict[str, str]:
    """The three normalised views of a text, as strings whose tokens the MinHash tokeniser
    reads (lowercase, runs of non-alphanumerics separate tokens)."""
    lower = _NUM.sub(f" {NUM_TOKEN} ", text)
    names = _NUM.sub(f" {NUM_TOKEN} ", _CAP.sub(f" {NAME_TOKEN} ", text))  # names first: fib4(
    return {"strict": text, "lower": lower, "names": names}


@dataclass(frozen=True, order=True)
class Hit:
    key: object
    benchmark: str
    item_id: str
    kind: str  # "<n>-gram/<view>" or "short/strict"
    score: float


def _salt(view: int, n: int) -> np.uint64:
    return np.uint64(((view + 1) * 0x9E3779B97F4A7C15 + n * 0xC2B2AE3D27D4EB4F) & _M64)


def _ngram_keys(th: np.ndarray, offsets: np.ndarray, n: int, salt: np.uint64) -> tuple[np.ndarray, np.ndarray]:
    """(doc, key) for every full window of n tokens; keys are salted by (view, n)."""
    doc, key, _ = _ngram_windows(th, offsets, n, salt)
    return doc, key


def _ngram_windows(th: np.ndarray, offsets: np.ndarray, n: int,
                   salt: np.uint64) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(doc, key, position of the window's first token in its doc) for every full window."""
    counts = np.diff(offsets)
    per = np.maximum(counts - n + 1, 0)
    total = int(per.sum())
    if total == 0:
        z = np.zeros(0, np.int64)
        return z, np.zeros(0, np.uint64), z
    doc = np.repeat(np.arange(counts.size), per)
    start = np.zeros(counts.size + 1, dtype=np.int64)
    np.cumsum(per, out=start[1:])
    rel = np.arange(total, dtype=np.int64) - start[doc]
    pos = rel + offsets[doc]
    mult = np.random.default_rng(0x6A3 + n).integers(1, 2**63, size=n, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    acc = np.full(total, salt, dtype=np.uint64)
    for j in range(n):
        acc += th[pos + j] * mult[j]
    return doc, _mix64(acc), rel


def _join_key(key: np.ndarray, chan) -> np.ndarray:
    """Channel (3 bits) << 41 | top 41 bits of the n-gram hash, as int64."""
    ch = np.asarray(chan).astype(np.uint64) << np.uint64(_KEY_BITS)
    return (ch | (key >> np.uint64(64 - _KEY_BITS))).view(np.int64)


def _content_words() -> np.ndarray:
    """Token hashes that are not content words: the placeholders, single characters, function words."""
    singles = [chr(c) for c in range(ord("a"), ord("z") + 1)] + [str(d) for d in range(10)]
    th, _ = _tokenise([" ".join([NAME_TOKEN, *singles, *_FUNCTION_WORDS])])
    return np.unique(th)


def _spans(group: np.ndarray, pos: np.ndarray, n: np.ndarray) -> np.ndarray:
    """For rows sorted by (group, pos), each row's share of the union of the spans
    [pos, pos + n): min(n, distance to the next row of the group)."""
    span = n.astype(np.int64).copy()
    if span.size > 1:
        same = group[1:] == group[:-1]
        span[:-1] = np.where(same, np.minimum(span[:-1], pos[1:] - pos[:-1]), span[:-1])
    return span


class Decontaminator:
    """Built once from the benchmark sets; ``find`` checks any number of texts.

    ``benchmarks``: ``{"gsm8k_test": [(item_id, text), ...], ...}``.
    """

    def __init__(self, benchmarks: dict[str, list[tuple[str, str]]], n: int = 13, *,
                 ns: Sequence[int] | None = None, short_n: int | None = SHORT_N,
                 short_item_tokens: int = SHORT_ITEM_TOKENS, min_coverage: dict[int, float] | None = None,
                 cut_down: tuple[float, float] = DEFAULT_CUT_DOWN, single_span: float = SINGLE_SPAN,
                 min_words: int = MIN_WORDS, max_item_df: int = MAX_ITEM_DF, short_min_tokens: int = 2,
                 con=None) -> None:
        self.ns = tuple(sorted(set(ns if ns is not None else (n, 8)), reverse=True))
        self.n = max(self.ns)
        self.min_coverage = dict(DEFAULT_MIN_COVERAGE)
        self.min_coverage.update(min_coverage or {})
        self.cut_down = tuple(cut_down)
        self.single_span = single_span
        self.min_words = min_words
        self.max_item_df = max_item_df
        self.short_min_tokens = short_min_tokens
        # channels: (view, n, longest item indexed or None); then the strict channel of tiny items
        self.channels: list[tuple[int, int, int | None]] = [(v, k, None) for v in (1, 2) for k in self.ns]
        if short_n and short_n not in self.ns:
            # lower view only: with names and numbers both gone a short item is mostly template
            self.channels += [(1, short_n, short_item_tokens)]
        # strict 3-grams of short items: numbers kept, so a swapped or replaced word in a
        # one-line item still leaves most of it matched, and its numbers make it specific
        self.channels += [(0, SHORT_GRAM, short_item_tokens)]
        for _, k, _ in self.channels:
            self.min_coverage.setdefault(k, 0.6)
        self.short_channel = len(self.channels)
        if self.short_channel >= 1 << (_JOIN_BITS - _KEY_BITS):
            raise ValueError("too many n-gram sizes")
        nch = self.short_channel + 1
        self._chan_n = np.array([k for _, k, _ in self.channels] + [SHORT_GRAM], dtype=np.int64)
        self._chan_view = np.array([v for v, _, _ in self.channels] + [0], dtype=np.int64)
        self._chan_need = np.array([self.min_coverage[k] for _, k, _ in self.channels] + [1.0])
        self._chan_words = np.array([k <= (short_n or 0) for _, k, _ in self.channels] + [False])

        self.items: list[tuple[str, str]] = []
        texts: list[str] = []
        for bench, rows in benchmarks.items():
            for item_id, text in rows:
                self.items.append((bench, str(item_id)))
                texts.append(text)
        ni = len(self.items)
        if ni >= 1 << _ITEM_BITS:
            raise ValueError("too many benchmark items")
        toks = self._tokens(texts)
        # content-word prefix sums per view over the items' concatenated tokens
        stop = _content_words()
        self._word_cum, self._item_off = {}, {}
        for v in (0, 1, 2):
            th, off = toks[VIEWS[v]]
            self._word_cum[v] = np.concatenate(([0], np.cumsum(~np.isin(th, stop)))).astype(np.int64)
            self._item_off[v] = off.astype(np.int64)
        item, key, chan, pos = self._index_rows(toks)
        # the strict channel's n is the whole length for items shorter than SHORT_GRAM
        self._short_len = np.diff(toks["strict"][1]).astype(np.int64)
        self._bench_key = key
        self._bench_item = item.astype(np.int32)
        self._bench_chan = chan.astype(np.int8)
        self._bench_pos = pos.astype(np.int32)
        # item size per channel: tokens covered by its indexed n-grams (rows, for the strict channel)
        self.item_rows = np.zeros((ni, nch), dtype=np.int64)
        np.add.at(self.item_rows, (item, chan), 1)
        self.item_tokens = np.zeros((ni, nch), dtype=np.int64)
        order = np.lexsort((pos, chan, item))
        grp = item[order] * nch + chan[order]
        np.add.at(self.item_tokens, (item[order], chan[order]),
                  _spans(grp, pos[order], self._row_n(item[order], chan[order])))
        self._has_short = bool(self.item_rows[:, self.short_channel].any())
        # python lookup structure: key -> list of (item, channel, position)
        lookup: dict[int, list[tuple[int, int, int]]] = defaultdict(list)
        for k, i, c, p in zip(key.tolist(), item.tolist(), chan.tolist(), pos.tolist()):
            lookup[k].append((i, c, p))
        self._lookup = dict(lookup)
        self._con = con
        self._table = None

    # -- n-grams --------------------------------------------------------------------------

    @staticmethod
    def _tokens(texts: Sequence[str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        vs = [views(t) for t in texts]
        return {name: _tokenise([v[name] for v in vs]) for name in VIEWS}

    def _row_n(self, item: np.ndarray, chan: np.ndarray) -> np.ndarray:
        """Each row's n-gram size (a tiny item's strict n is its length when below SHORT_GRAM)."""
        n = self._chan_n[chan]
        strict = chan == self.short_channel
        if strict.any():
            n = n.copy()
            n[strict] = np.minimum(n[strict], self._short_len[item[strict]])
        return n

    def _index_rows(self, toks) -> tuple[np.ndarray, ...]:
        """The benchmark index: (item, join key, channel, position) rows, every position of
        every n-gram kept; boilerplate n-grams (in ``max_item_df`` items or more) dropped."""
        parts = []
        for ch, (view, n, longest) in enumerate(self.channels):
            th, off = toks[VIEWS[view]]
            doc, key, pos = _ngram_windows(th, off, n, _salt(view, n))
            if longest is not None:
                sel = np.diff(off)[doc] <= longest
                doc, key, pos = doc[sel], key[sel], pos[sel]
            parts.append((doc, _join_key(key, ch), np.full(doc.size, ch, np.int64), pos))
        th, off = toks["strict"]
        counts = np.diff(off)
        tiny = (counts < self.n) & (counts >= self.short_min_tokens)
        self._tiny_lengths = sorted(set(counts[tiny & (counts < SHORT_GRAM)].tolist()))
        for length in [SHORT_GRAM, *self._tiny_lengths]:
            doc, key, pos = _ngram_windows(th, off, length, _salt(0, 0))
            sel = tiny[doc] & ((counts[doc] == length) if length < SHORT_GRAM else True)
            parts.append((doc[sel], _join_key(key[sel], self.short_channel),
                          np.full(int(sel.sum()), self.short_channel, np.int64), pos[sel]))
        item, key, chan, pos = (np.concatenate([p[j] for p in parts]) for j in range(4))
        if self.max_item_df and key.size:
            pair = np.unique((key.view(np.uint64) << np.uint64(_ITEM_BITS)) | item.astype(np.uint64))
            keys, df = np.unique((pair >> np.uint64(_ITEM_BITS)).view(np.int64), return_counts=True)
            common = keys[df >= self.max_item_df]
            drop = np.isin(key, common) & (chan != self.short_channel)
            item, key, chan, pos = item[~drop], key[~drop], chan[~drop], pos[~drop]
        return item, key, chan, pos

    def _grams(self, texts: Sequence[str]) -> tuple[Iterable[tuple[np.ndarray, np.ndarray]], np.ndarray]:
        """(doc, join key) arrays of the texts for every channel, and tokens per (doc, view)."""
        toks = self._tokens(texts)
        lengths = np.stack([np.diff(toks[name][1]) for name in VIEWS], axis=1)

        def gen():
            for ch, (view, n, _) in enumerate(self.channels):
                th, off = toks[VIEWS[view]]
                doc, key = _ngram_keys(th, off, n, _salt(view, n))
                yield doc, _join_key(key, ch)
            if self._has_short:
                th, off = toks["strict"]
                for length in [SHORT_GRAM, *self._tiny_lengths]:
                    doc, key = _ngram_keys(th, off, length, _salt(0, 0))
                    yield doc, _join_key(key, self.short_channel)
        return gen(), lengths

    def _text_grams(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Distinct (doc, join key) of the texts, sorted by doc, and tokens per (doc, view).

        The join key packs the channel (3 bits) and the top 41 bits of the n-gram hash into
        44 bits; with the doc number above them one ``np.sort`` of uint64 finds the distinct
        pairs (41 bits: ~0.4 spurious shared n-grams per 3M text n-grams against 300k
        benchmark n-grams -- noise next to the spans a hit needs)."""
        if len(texts) >= 1 << (64 - _JOIN_BITS):
            raise ValueError("too many texts in one batch")
        grams, lengths = self._grams(texts)
        packed = [(doc.astype(np.uint64) << np.uint64(_JOIN_BITS)) | key.view(np.uint64) for doc, key in grams]
        v = np.sort(np.concatenate(packed)) if packed else np.zeros(0, np.uint64)
        if v.size:
            keep = np.empty(v.size, dtype=bool)
            keep[0] = True
            np.not_equal(v[1:], v[:-1], out=keep[1:])
            v = v[keep]
        doc = (v >> np.uint64(_JOIN_BITS)).astype(np.int64)
        key = (v & np.uint64((1 << _JOIN_BITS) - 1)).view(np.int64)
        return doc, key, lengths

    # -- the join: matched (doc, item, channel, item position) rows ---------------------------

    def _matches_duckdb(self, doc: np.ndarray, key: np.ndarray) -> tuple[np.ndarray, ...]:
        import duckdb
        import pyarrow as pa

        if self._con is None:
            self._con = duckdb.connect()
        con = self._con
        if self._table is None:
            self._table = f"_bench_ngrams_{uuid.uuid4().hex}"
            con.register("_bench_src", pa.table({"key": self._bench_key, "item": self._bench_item,
                                                 "chan": self._bench_chan, "pos": self._bench_pos}))
            con.execute(f"CREATE TEMP TABLE {self._table} AS SELECT * FROM _bench_src")
            con.unregister("_bench_src")
        name = f"_text_ngrams_{uuid.uuid4().hex}"
        con.register(name, pa.table({"doc": doc.astype(np.int32), "key": key}))
        try:
            res = con.execute(f"SELECT t.doc, b.item, b.chan, b.pos FROM {name} t "
                              f"JOIN {self._table} b ON t.key = b.key").fetchnumpy()
        finally:
            con.unregister(name)
        return tuple(np.asarray(res[c], np.int64) for c in ("doc", "item", "chan", "pos"))

    def _matches_python(self, doc: np.ndarray, key: np.ndarray) -> tuple[np.ndarray, ...]:
        """Plain Python: one dict lookup per distinct text n-gram."""
        lookup = self._lookup
        rows: list[tuple[int, int, int, int]] = []
        for d, k in zip(doc.tolist(), key.tolist()):
            found = lookup.get(k)
            if found is not None:
                rows.extend((d, i, c, p) for i, c, p in found)
        if not rows:
            z = np.zeros(0, np.int64)
            return z, z, z, z
        a = np.array(rows, dtype=np.int64)
        return a[:, 0], a[:, 1], a[:, 2], a[:, 3]

    # -- scoring ------------------------------------------------------------------------------

    def scores(self, texts: Sequence[str], method: str = "duckdb") -> dict[str, np.ndarray]:
        """Per (text, item, channel) with a shared n-gram: ``shared`` n-grams, ``covered`` item
        tokens and content ``words`` among them, ``item_share``, ``text_share`` (for tuning and reports)."""
        doc, key, lengths = self._text_grams(texts)
        if method == "duckdb":
            d, i, c, p = self._matches_duckdb(doc, key)
        elif method == "python":
            d, i, c, p = self._matches_python(doc, key)
        else:
            raise ValueError(f"unknown method {method!r}")
        nch = self.short_channel + 1
        order = np.lexsort((p, c, i, d))
        d, i, c, p = d[order], i[order], c[order], p[order]
        grp = (d * len(self.items) + i) * nch + c
        span = _spans(grp, p, self._row_n(i, c))
        # content words inside each row's span, from the item's prefix sums in its view
        words = np.zeros(span.size, dtype=np.int64)
        view = self._chan_view[c]
        for v in (0, 1, 2):
            sel = (view == v) & (c != self.short_channel)
            start = self._item_off[v][i[sel]] + p[sel]
            words[sel] = self._word_cum[v][start + span[sel]] - self._word_cum[v][start]
        first = np.ones(grp.size, dtype=bool)
        first[1:] = grp[1:] != grp[:-1]
        gid = np.cumsum(first) - 1
        d, i, c = d[first], i[first], c[first]
        shared = np.bincount(gid, minlength=d.size).astype(np.int64)
        covered = np.bincount(gid, weights=span, minlength=d.size).astype(np.int64)
        words = np.bincount(gid, weights=words, minlength=d.size).astype(np.int64)
        isz = self.item_tokens[i, c]
        return {"doc": d, "item": i, "chan": c, "shared": shared, "covered": covered, "words": words,
                "item_rows": self.item_rows[i, c], "item_tokens": isz,
                "item_share": covered / np.maximum(isz, 1),
                "text_share": np.minimum(covered / np.maximum(lengths[d, self._chan_view[c]], 1), 1.0)}

    def _decide(self, s: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """(hit mask, score) per row of ``scores``; see the module docstring."""
        chan = s["chan"]
        strict = chan == self.short_channel
        item_share, eps = s["item_share"], 1e-12
        enough = (item_share >= self._chan_need[chan] - eps) & (
            (s["shared"] >= 2) | (item_share >= self.single_span - eps))
        text_min, item_min = self.cut_down
        cut = ((s["text_share"] >= text_min - eps) & (item_share >= item_min - eps)
               & (s["covered"] >= MIN_CUT_TOKENS))
        words_ok = ~self._chan_words[chan] | (s["words"] >= self.min_words)
        hit = np.where(strict, s["shared"] >= s["item_rows"], (enough | cut) & words_ok)
        score = np.where(strict, 1.0, np.minimum(item_share, 1.0))
        return hit, score

    def find(self, texts: Sequence[tuple[object, str]], method: str = "duckdb",
             batch_size: int = 20000) -> list[Hit]:
        """Hits for ``(key, text)`` pairs: one per (text, benchmark item), from its best
        channel, in input order. ``method``: ``"duckdb"`` or ``"python"`` (same hits).
        Texts are processed ``batch_size`` at a time (bounded memory)."""
        texts = list(texts)
        out = []
        for lo in range(0, len(texts), batch_size):
            batch = texts[lo: lo + batch_size]
            s = self.scores([t for _, t in batch], method)
            hit, score = self._decide(s)
            best: dict[tuple[int, int], tuple[float, int]] = {}
            for d, i, c, sc in zip(s["doc"][hit].tolist(), s["item"][hit].tolist(), s["chan"][hit].tolist(),
                                   score[hit].tolist()):
                cur = best.get((d, i))
                if cur is None or (sc, -c) > (cur[0], -cur[1]):
                    best[(d, i)] = (sc, c)
            for (d, i), (sc, c) in sorted(best.items()):
                bench, item_id = self.items[i]
                out.append(Hit(batch[d][0], bench, item_id, self._kind(c), round(sc, 6)))
        return out

    def _kind(self, chan: int) -> str:
        if chan == self.short_channel:
            return "short/strict"
        v, k, _ = self.channels[chan]
        return f"{k}-gram/{VIEWS[v]}"
