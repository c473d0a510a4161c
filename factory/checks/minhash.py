"""Near-duplicate detection: MinHash signatures + LSH banding, band join in DuckDB.

Pipeline (all vectorised numpy; no per-shingle Python work):

1. **Normalise + tokenise.** ``normalise_tokens`` is the reference definition: lowercase,
   then every maximal run of characters that are not letters or digits (whitespace,
   punctuation, underscore, symbols) separates tokens; that strips punctuation and
   collapses whitespace in one rule. All texts are tokenised together on their UTF-8
   bytes with lookup tables (ASCII lowercase, ASCII non-alphanumerics separate); a text
   with non-ASCII characters first goes through ``str.lower`` and a regex that turns
   non-ASCII non-word characters into spaces, so every non-ASCII byte left belongs to a
   word. Tests check this equals ``normalise_tokens`` + ``token_hash``.
2. **Token hashes.** Each token's bytes are read as little-endian 64-bit words (zero-padded)
   and folded with the splitmix64 finaliser: a stable 64-bit hash that depends only on the
   token's bytes (``token_hash`` is the scalar reference).
3. **Shingles: word 5-grams** (``ngram=5``). Word shingles rather than character shingles:
   they are what datatrove / open-r1 style dedup uses, they are ~5x fewer than character
   5-grams per document (so sketching is ~5x cheaper) and a one-word edit changes at most
   ``ngram`` shingles. A shingle hash is ``mix64(sum_j token_hash[i+j] * R_j)`` with fixed
   odd multipliers ``R_j``; a document with fewer than ``ngram`` tokens has one shingle
   (all its tokens); an empty document has none and gets the all-``0xFFFFFFFF`` signature.
4. **Sketch** (``sketch="fast"``, the default). A fast similarity sketch (Dahlgaard,
   Knudsen & Thorup 2017, "Fast Similarity Sketching", with the classic fallback that
   rensa's R-MinHash also uses): in each of ``ROUNDS`` = 4 rounds every shingle hashes to
   one of the ``num_perm`` slots with a random value tagged by the round; a slot keeps the
   minimum (``np.minimum.at``); slots still empty afterwards (short documents) take the
   classic MinHash value. Each slot's value is a function of (shingle, slot) alone, so
   P[slots equal] = Jaccard exactly, like classic MinHash; but the slots are filled
   almost without replacement, which cuts the estimate's spread by ~20-25% for
   documents of up to a few hundred shingles (benchmarks/near_dup.py: precision/recall
   ~0.947 vs ~0.925 for classic at 128 slots). ``sketch="classic"``:
   ``h_p(x) = (a_p * x + b_p) mod 2**32`` (a_p odd) on the top 32 bits of each shingle
   hash, min over shingles, computed as (num_perm x shingles) blocks of whole documents
   so that ``np.minimum.reduceat`` runs along contiguous memory. Parameters come from
   ``numpy.random.default_rng(seed)``: signatures are stable across runs and machines
   (but the two sketches are not comparable with each other). Batches of documents run
   on a thread pool (``workers``); numpy releases the GIL in the heavy loops.
5. **LSH.** ``lsh_bands`` picks (bands b, rows r) minimising the weighted integrated false
   positive + false negative probability for the threshold (datasketch's
   ``_optimal_param``; equal weights, 0.8 and 128 permutations give b=9, r=13, which makes
   a pair at J=0.8 a candidate only 40% of the time). Because every candidate is verified
   against the signatures, clustering uses ``recall_bands`` (weights 0.05 / 0.95): b=16,
   r=8 for 0.8 / 128, candidate probability 0.95 at J=0.8, 0.994 at 0.85, 0.06 at 0.5.
   ``band_hashes`` hashes each band's r values to int64.
6. **Band join in DuckDB.** (doc, band hash) rows are registered as an Arrow table and
   self-joined on the hash (the band number is mixed into it) with doc_a < doc_b, after
   dropping single-member buckets; buckets bigger than ``max_bucket`` link
   every member to the bucket's first doc only (a star instead of a clique) so that a
   pathological bucket cannot produce a quadratic number of pairs. Documents with
   identical signatures are collapsed onto one representative first (they are
   duplicates with estimated Jaccard 1, and would otherwise make cliques).
7. **Verify + cluster.** Candidate pairs are kept when the estimated Jaccard (fraction of
   equal signature slots) is >= threshold; when the texts are at hand, pairs whose
   estimate is within ``exact_margin`` (0.07, ~2 standard deviations) of the threshold
   are decided by their exact shingle Jaccard instead (vectorised,
   ``exact_jaccard_pairs``, re-shingling only the documents involved), which takes
   precision / recall from ~0.945 / 0.945 to ~1.0 / 0.995 on benchmarks/near_dup.py for
   ~15-30% more time. A
   vectorised union-find (min-label hooking +
   pointer jumping) gives the clusters. The survivor of a cluster is the member with the
   lowest ``rank`` (e.g. 0 for verified traces, 1 otherwise), ties broken by id: it does
   not depend on input order.
"""

from __future__ import annotations

import math
import os
import re
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Iterable, Sequence

import numpy as np

__all__ = [
    "SIGNATURE_VERSION",
    "normalise_tokens",
    "token_hash",
    "shingle_hashes",
    "minhash_signatures",
    "lsh_bands",
    "recall_bands",
    "band_hashes",
    "estimated_jaccard",
    "candidate_pairs",
    "verified_pairs",
    "exact_jaccard_pairs",
    "clusters_from_pairs",
    "near_duplicate_clusters",
    "write_signatures",
    "candidate_pairs_from_table",
]

_M64 = (1 << 64) - 1
_U64 = np.uint64
_NON_WORD = re.compile(r"[\W_]+")
_NON_ASCII_NON_WORD = re.compile(r"[^\w\x00-\x7f]+")
_EMPTY = np.uint32(0xFFFFFFFF)

# byte lookup tables: which bytes belong to words, and ASCII lowercase
_WORD = np.zeros(256, dtype=bool)
for _c in b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ":
    _WORD[_c] = True
_WORD[0x80:] = True  # UTF-8 continuation/lead bytes (non-ASCII texts are pre-normalised)
_LOWER = np.arange(256, dtype=np.uint8)
_LOWER[ord("A"): ord("Z") + 1] += 32
_LOWER[~_WORD] = 0
# masks keeping the low k bytes of a little-endian word, k = 0..8
_MASKS = np.array([(1 << (8 * k)) - 1 for k in range(8)] + [_M64], dtype=np.uint64)

_K_LEN = 0x9E3779B97F4A7C15
_C1, _C2 = 0xBF58476D1CE4E5B9, 0x94D049BB133111EB


# ---------------------------------------------------------------------------------------
# hashing primitives (numpy uint64 arithmetic wraps modulo 2**64)


def _mix64(z: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser, vectorised (returns a new array)."""
    z = z ^ (z >> _U64(30))
    z *= _U64(_C1)
    z ^= z >> _U64(27)
    z *= _U64(_C2)
    z ^= z >> _U64(31)
    return z


def _mix64_int(z: int) -> int:
    z &= _M64
    z ^= z >> 30
    z = (z * _C1) & _M64
    z ^= z >> 27
    z = (z * _C2) & _M64
    z ^= z >> 31
    return z


def token_hash(token: str | bytes) -> int:
    """Scalar reference of the vectorised token hash (tests check they agree)."""
    data = token.encode() if isinstance(token, str) else bytes(token)
    n = len(data)
    h = _mix64_int(int.from_bytes(data[:8].ljust(8, b"\0"), "little") ^ ((n * _K_LEN) & _M64))
    for c in range(8, n, 8):
        h = _mix64_int(h ^ int.from_bytes(data[c: c + 8].ljust(8, b"\0"), "little"))
    return h


def _shingle_multipliers(ngram: int) -> np.ndarray:
    rng = np.random.default_rng(0x5EED + ngram)
    return rng.integers(1, 2**63, size=ngram + 1, dtype=np.uint64) * _U64(2) + _U64(1)


def normalise_tokens(text: str) -> list[str]:
    """Reference normalisation: lowercase, split on runs of non-alphanumerics."""
    return [t for t in _NON_WORD.split(text.lower()) if t]


# ---------------------------------------------------------------------------------------
# tokenisation + shingling


def _tokenise(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Token hashes (uint64, all docs concatenated) and per-doc token offsets (n+1)."""
    n = len(texts)
    prepared = []
    blens = np.empty(n, dtype=np.int64)
    for i, s in enumerate(texts):
        if not s.isascii():
            # non-ASCII non-word characters -> space; ASCII is left to the byte tables
            s = _NON_ASCII_NON_WORD.sub(" ", s.lower())
            blens[i] = len(s.encode("utf-8", "surrogatepass"))
        else:
            blens[i] = len(s)
        prepared.append(s)
    blob = "\x00".join(prepared).encode("utf-8", "surrogatepass")
    size = len(blob)
    buf = np.frombuffer(blob, dtype=np.uint8)
    lowered = np.zeros(size + 16, dtype=np.uint8)
    np.take(_LOWER, buf, out=lowered[:size])
    word = lowered[: size + 1] != 0  # last (padding) byte is False
    # token starts/ends: transitions of the word mask
    edges = np.flatnonzero(word[1:] != word[:-1]) + 1
    if size and word[0]:
        edges = np.concatenate(([0], edges))
    starts = edges[0::2]
    ends = edges[1::2]
    lens = (ends - starts).astype(np.int64)
    # read unaligned little-endian 64-bit words at any byte offset
    win = np.ndarray((size + 8,), dtype="<u8", buffer=lowered, strides=(1,))
    h = win[starts] & _MASKS[np.minimum(lens, 8)]
    h ^= lens.astype(np.uint64) * _U64(_K_LEN)
    h = _mix64(h)
    c = 8
    longer = np.flatnonzero(lens > 8)
    while longer.size:
        w = win[starts[longer] + c] & _MASKS[np.minimum(lens[longer] - c, 8)]
        h[longer] = _mix64(h[longer] ^ w)
        c += 8
        longer = longer[lens[longer] > c]
    # doc of each token from the doc byte offsets (docs joined by one separator byte)
    doc_start = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(blens + 1, out=doc_start[1:])
    tok_off = np.searchsorted(starts, doc_start[:n], side="left")
    offsets = np.empty(n + 1, dtype=np.int64)
    offsets[:n] = tok_off
    offsets[n] = starts.size
    return h, offsets


def _shingles_from_tokens(th: np.ndarray, offsets: np.ndarray, ngram: int) -> tuple[np.ndarray, np.ndarray]:
    counts = np.diff(offsets)
    nsh = np.where(counts >= ngram, counts - ngram + 1, np.minimum(counts, 1))
    sh_off = np.zeros(counts.size + 1, dtype=np.int64)
    np.cumsum(nsh, out=sh_off[1:])
    total = int(sh_off[-1])
    if total == 0:
        return np.zeros(0, dtype=np.uint64), sh_off
    # global token position of every shingle start
    doc_of = np.repeat(np.arange(counts.size), nsh)
    pos = np.arange(total, dtype=np.int64) - sh_off[doc_of] + offsets[doc_of]
    mult = _shingle_multipliers(ngram)
    th_pad = np.concatenate((th, np.zeros(ngram, dtype=np.uint64)))
    acc = np.zeros(total, dtype=np.uint64)
    short_docs = (counts > 0) & (counts < ngram)
    if short_docs.any():
        length = np.minimum(counts[doc_of], ngram).astype(np.uint64)
        for j in range(ngram):
            t = th_pad[pos + j]
            t[length <= j] = 0
            acc += t * mult[j]
        acc += length * mult[ngram]
    else:
        for j in range(ngram):
            acc += th_pad[pos + j] * mult[j]
        acc += _U64((ngram * int(mult[ngram])) & _M64)
    return _mix64(acc), sh_off


def shingle_hashes(texts: Sequence[str], ngram: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """64-bit hashes of every word ``ngram``-shingle, with per-document offsets (n+1)."""
    th, offsets = _tokenise(texts)
    return _shingles_from_tokens(th, offsets, ngram)


# ---------------------------------------------------------------------------------------
# MinHash


ROUNDS = 4  # bucket rounds of the fast sketch (<= 6: the round is kept in the top 3 bits)
#: changes whenever signatures for the same (texts, num_perm, ngram, seed) would change:
#: put it (and the sketch name) in any cache key of stored signatures
SIGNATURE_VERSION = 1


def _permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = (rng.integers(0, 2**31, size=num_perm, dtype=np.uint64) * 2 + 1).astype(np.uint32)
    b = rng.integers(0, 2**32, size=num_perm, dtype=np.uint64).astype(np.uint32)
    return a, b


def _round_salts(seed: int) -> np.ndarray:
    return np.random.default_rng([seed, 0xF55]).integers(0, 2**63, size=ROUNDS, dtype=np.uint64)


def _classic(x: np.ndarray, sh_off: np.ndarray, a: np.ndarray, b: np.ndarray, out: np.ndarray,
             block: int) -> None:
    """Classic MinHash: out[d, p] = min over doc d's shingles of (a_p*x+b_p) mod 2**32
    (x: uint32). Empty docs get 0xFFFFFFFF. Computed as (num_perm, shingles) blocks of
    whole documents so that the per-document minimum runs along contiguous memory."""
    nsh = np.diff(sh_off)
    out[nsh == 0] = _EMPTY
    nonempty = np.flatnonzero(nsh > 0)
    if nonempty.size == 0:
        return
    starts = sh_off[nonempty]
    # blocks of whole docs holding ~`block` shingles each; a doc longer than `block`
    # is a block of its own, sketched in column chunks
    cuts = np.searchsorted(starts, np.arange(0, int(sh_off[-1]), block), side="left")
    big = np.flatnonzero(nsh[nonempty] > block)
    cuts = np.unique(np.concatenate((cuts, big, big + 1, [nonempty.size])))
    cuts = cuts[cuts <= nonempty.size]
    tmp = np.empty((a.size, 2 * block), dtype=np.uint32)
    a2, b2 = a[:, None], b[:, None]
    for lo, hi in zip(cuts[:-1].tolist(), cuts[1:].tolist()):
        s0 = int(starts[lo])
        s1 = int(sh_off[nonempty[hi - 1] + 1])
        if s1 - s0 > 2 * block:  # one long document
            m = np.full(a.size, _EMPTY, dtype=np.uint32)
            for c in range(s0, s1, block):
                e = min(c + block, s1)
                v = tmp[:, : e - c]
                np.multiply(a2, x[None, c:e], out=v)
                v += b2
                np.minimum(m, v.min(axis=1), out=m)
            out[nonempty[lo]] = m
            continue
        v = tmp[:, : s1 - s0]
        np.multiply(a2, x[None, s0:s1], out=v)
        v += b2
        out[nonempty[lo:hi]] = np.minimum.reduceat(v, starts[lo:hi] - s0, axis=1).T


def _fast(sh: np.ndarray, sh_off: np.ndarray, a: np.ndarray, b: np.ndarray, salts: np.ndarray,
          out: np.ndarray, block: int) -> None:
    """Fast similarity sketch (Dahlgaard, Knudsen, Thorup 2017, with rensa's fallback):
    in round i < ROUNDS every shingle picks one slot and offers value (i << 29 | r);
    a slot keeps the minimum. Slots still empty after the rounds get the classic value
    (ROUNDS << 29 | classic >> 3). Every slot's value is a function of (shingle, slot)
    only, so P[slot equal] = J exactly, and the slots behave like sampling without
    replacement: ~20% less spread than classic MinHash for documents of <= 200 shingles."""
    n, k = out.shape
    nsh = np.diff(sh_off)
    flat = np.full(n * k, _EMPTY, dtype=np.uint32)
    base = np.repeat(np.arange(0, n * k, k, dtype=np.int64), nsh)
    lo32 = _U64(0xFFFFFFFF)
    for i in range(ROUNDS):
        h = _mix64(sh ^ salts[i])
        slot = ((h >> _U64(32)) * _U64(k)) >> _U64(32)
        slot = slot.view(np.int64)
        slot += base
        val = ((h & lo32) >> _U64(3)).astype(np.uint32)
        val |= np.uint32(i << 29)
        np.minimum.at(flat, slot, val)
    sig = flat.reshape(n, k)
    need = np.flatnonzero((nsh > 0) & (sig == _EMPTY).any(axis=1))
    if need.size:
        # classic values for the docs with empty slots (their shingles, gathered)
        cnt = nsh[need]
        sub_off = np.zeros(need.size + 1, dtype=np.int64)
        np.cumsum(cnt, out=sub_off[1:])
        pos = np.arange(int(sub_off[-1]), dtype=np.int64) + np.repeat(sh_off[need] - sub_off[:-1], cnt)
        x = (sh[pos] >> _U64(32)).astype(np.uint32)
        fb = np.empty((need.size, k), dtype=np.uint32)
        _classic(x, sub_off, a, b, fb, block)
        fb >>= np.uint32(3)
        fb |= np.uint32(ROUNDS << 29)
        rows = sig[need]
        np.copyto(rows, fb, where=rows == _EMPTY)
        sig[need] = rows
    out[:] = sig


def minhash_signatures(texts: Sequence[str], num_perm: int = 128, ngram: int = 5, seed: int = 1,
                       *, sketch: str = "fast", workers: int | None = None, batch_size: int = 8192,
                       block: int = 8192) -> np.ndarray:
    """MinHash signatures (n, num_perm) uint32 of word ``ngram``-shingles (see module doc).

    ``sketch="fast"`` (default) or ``"classic"``; their signatures are not comparable with
    each other. ``workers`` threads (default: all cores, at most 8) sketch batches of
    ``batch_size`` documents; the result does not depend on ``workers``, ``batch_size``
    or ``block``.
    """
    if sketch not in ("fast", "classic"):
        raise ValueError(f"unknown sketch {sketch!r}")
    n = len(texts)
    out = np.empty((n, num_perm), dtype=np.uint32)
    if n == 0:
        return out
    a, b = _permutations(num_perm, seed)
    salts = _round_salts(seed)

    def run(lo: int) -> None:
        hi = min(lo + batch_size, n)
        sh, sh_off = shingle_hashes(texts[lo:hi], ngram)
        if sketch == "fast":
            _fast(sh, sh_off, a, b, salts, out[lo:hi], block)
        else:
            _classic((sh >> _U64(32)).astype(np.uint32), sh_off, a, b, out[lo:hi], block)

    starts = range(0, n, batch_size)
    workers = _workers(workers)
    if workers <= 1 or n <= batch_size:
        for lo in starts:
            run(lo)
    else:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(run, starts))
    return out


def _workers(workers: int | None) -> int:
    if workers is None:
        return max(1, min(8, os.cpu_count() or 1))
    return max(1, int(workers))


def estimated_jaccard(sig_a: np.ndarray, sig_b: np.ndarray) -> np.ndarray | float:
    """Fraction of equal slots; row-wise for 2-D inputs."""
    eq = np.asarray(sig_a) == np.asarray(sig_b)
    return eq.mean(axis=-1)


# ---------------------------------------------------------------------------------------
# LSH


def lsh_bands(threshold: float = 0.8, num_perm: int = 128, *, false_positive_weight: float = 0.5,
              false_negative_weight: float = 0.5) -> tuple[int, int]:
    """(bands b, rows r), b*r <= num_perm, minimising the weighted integrated false
    positive + false negative probability around ``threshold`` (as datasketch's
    ``_optimal_param`` does, with trapezoid integration instead of scipy's quad)."""
    if not 0.0 < threshold < 1.0:
        raise ValueError("threshold must be in (0, 1)")
    pairs = np.array([(b, r) for b in range(1, num_perm + 1) for r in range(1, num_perm // b + 1)])
    bb, rr = pairs[:, :1].astype(float), pairs[:, 1:].astype(float)
    grid = 1001
    lo = np.linspace(0.0, threshold, grid)[None, :]
    hi = np.linspace(threshold, 1.0, grid)[None, :]
    fp = np.trapezoid(1.0 - (1.0 - lo**rr) ** bb, lo, axis=1)
    fn = np.trapezoid((1.0 - hi**rr) ** bb, hi, axis=1)
    err = false_positive_weight * fp + false_negative_weight * fn
    best = int(np.flatnonzero(err <= err.min() + 1e-12)[0])  # first minimum, like datasketch
    return int(pairs[best, 0]), int(pairs[best, 1])


_BAND_CACHE: dict[tuple, tuple[int, int]] = {}

#: weights ``recall_bands`` uses: candidates are verified against the signatures afterwards,
#: so a false positive costs one comparison while a false negative is a missed duplicate.
RECALL_WEIGHTS = (0.05, 0.95)


def recall_bands(threshold: float = 0.8, num_perm: int = 128) -> tuple[int, int]:
    """``lsh_bands`` weighted for recall (``RECALL_WEIGHTS``): 0.8 / 128 -> (16, 8), which
    makes a pair at exactly the threshold a candidate with probability 0.95 (the
    unweighted (9, 13) gives 0.40). Cached."""
    key = (round(threshold, 6), num_perm)
    if key not in _BAND_CACHE:
        _BAND_CACHE[key] = lsh_bands(threshold, num_perm, false_positive_weight=RECALL_WEIGHTS[0],
                                     false_negative_weight=RECALL_WEIGHTS[1])
    return _BAND_CACHE[key]


def band_hashes(sigs: np.ndarray, b: int, r: int, chunk: int = 32768) -> np.ndarray:
    """(n, b) int64: hash of each band of ``r`` consecutive signature values. The band
    number is mixed in, so equal hashes in different bands do not occur (in practice)
    and the band join can use the hash alone."""
    sigs = np.asarray(sigs)
    n, k = sigs.shape
    if b * r > k:
        raise ValueError(f"b*r = {b * r} > num_perm = {k}")
    mult = np.random.default_rng(0xBA4D).integers(1, 2**63, size=r, dtype=np.uint64) * _U64(2) + _U64(1)
    salt = np.arange(b, dtype=np.uint64) * _U64(_K_LEN)
    out = np.empty((n, b), dtype=np.int64)
    for lo in range(0, n, chunk):
        v = sigs[lo: lo + chunk, : b * r].astype(np.uint64).reshape(-1, b, r)
        v *= mult
        acc = v.sum(axis=2, dtype=np.uint64)
        acc += salt
        out[lo: lo + chunk] = _mix64(acc).view(np.int64)
    return out


def _row_keys(bands: np.ndarray) -> np.ndarray:
    """One 64-bit key per row of band hashes (equal signatures -> equal keys)."""
    nb = bands.shape[1]
    mult = np.random.default_rng(0x51C).integers(1, 2**63, size=nb, dtype=np.uint64) * _U64(2) + _U64(1)
    acc = (bands.view(np.uint64) * mult).sum(axis=1, dtype=np.uint64)
    return _mix64(acc)


# ---------------------------------------------------------------------------------------
# candidate pairs (DuckDB band join), verification, clustering


# Candidate pairs from (doc, band, hash) rows: keep the buckets with > 1 member, self-join
# them; a bucket over max_bucket links its members to its first doc only (a star).
_PAIRS_SQL = """
WITH buckets AS (
    SELECT {key}, count(*) AS cnt, min({doc}) AS head
    FROM {src} GROUP BY {key} HAVING count(*) > 1
), members AS (
    SELECT m.{doc} AS doc, {mkey}, k.cnt, k.head
    FROM {src} m JOIN buckets k USING ({key})
)
SELECT DISTINCT a, b FROM (
    SELECT x.doc AS a, y.doc AS b
    FROM members x JOIN members y USING ({key})
    WHERE x.doc < y.doc AND x.cnt <= {max_bucket}
    UNION ALL
    SELECT head AS a, doc AS b FROM members WHERE cnt > {max_bucket} AND doc <> head
)
"""


def candidate_pairs(con, bands: np.ndarray, docs: np.ndarray | None = None, *,
                    max_bucket: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """LSH candidate pairs (a < b, as doc numbers) from an (n, b) band-hash matrix; the
    self-join on (band, hash) runs in DuckDB over a registered Arrow table."""
    import pyarrow as pa

    n, nb = bands.shape
    doc = np.arange(n, dtype=np.int64) if docs is None else np.asarray(docs, dtype=np.int64)
    # band_hashes mixes the band number into every hash, so the join key is the hash
    # alone (a one-column join is ~3x faster in DuckDB than (band, hash))
    table = pa.table({"doc": np.repeat(doc, nb), "hash": bands.reshape(-1)})
    name = f"_lsh_bands_{uuid.uuid4().hex}"
    con.register(name, table)
    try:
        sql = _PAIRS_SQL.format(src=name, doc="doc", key="hash", mkey="hash", max_bucket=int(max_bucket))
        res = con.execute(sql).fetchnumpy()
    finally:
        con.unregister(name)
    a = np.asarray(res["a"], dtype=np.int64)
    b = np.asarray(res["b"], dtype=np.int64)
    return a, b


def verified_pairs(sigs: np.ndarray, a: np.ndarray, b: np.ndarray, threshold: float,
                   chunk: int = 65536) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Keep pairs whose estimated Jaccard >= threshold; returns (a, b, estimate)."""
    keep_a, keep_b, keep_j = [], [], []
    need = math.ceil(threshold * sigs.shape[1] - 1e-9)  # equal slots needed
    for s in range(0, a.size, chunk):
        pa_, pb_ = a[s: s + chunk], b[s: s + chunk]
        eq = (sigs[pa_] == sigs[pb_]).sum(axis=1)
        ok = eq >= need
        keep_a.append(pa_[ok])
        keep_b.append(pb_[ok])
        keep_j.append(eq[ok] / sigs.shape[1])
    if not keep_a:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    return np.concatenate(keep_a), np.concatenate(keep_b), np.concatenate(keep_j)


def exact_jaccard_pairs(texts: Sequence[str], a: np.ndarray, b: np.ndarray, ngram: int = 5,
                        chunk: int = 1 << 22) -> np.ndarray:
    """Exact Jaccard of the shingle sets of each pair (texts[a[i]], texts[b[i]]), vectorised:
    per-pair element lists are tagged with the pair number and sorted; equal neighbours are
    the intersection. (Shingles compared on 32 bits: a collision inside one pair's union of
    n shingles has probability ~n^2/2^33.) Two empty documents have Jaccard 1."""
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    if a.size == 0:
        return np.zeros(0)
    docs = np.unique(np.concatenate((a, b)))
    sh, off = shingle_hashes([texts[i] for i in docs.tolist()], ngram)
    local = np.repeat(np.arange(docs.size, dtype=np.uint64), np.diff(off))
    v = np.sort((local << _U64(32)) | (sh >> _U64(32)))
    if v.size:
        keep = np.empty(v.size, dtype=bool)
        keep[0] = True
        np.not_equal(v[1:], v[:-1], out=keep[1:])
        v = v[keep]
    owner = (v >> _U64(32)).astype(np.int64)
    vals = v & _U64(0xFFFFFFFF)
    cnt = np.bincount(owner, minlength=docs.size)
    start = np.zeros(docs.size + 1, dtype=np.int64)
    np.cumsum(cnt, out=start[1:])
    ia, ib = np.searchsorted(docs, a), np.searchsorted(docs, b)
    inter = np.zeros(a.size, dtype=np.int64)
    size = cnt[ia] + cnt[ib]
    # pairs in chunks of ~`chunk` elements
    ends = np.cumsum(size)
    lo = 0
    while lo < a.size:
        hi = max(lo + 1, int(np.searchsorted(ends, (ends[lo - 1] if lo else 0) + chunk, side="right")))
        hi = min(hi, a.size)
        p = np.arange(lo, hi, dtype=np.int64)
        parts = []
        for side in (ia[p], ib[p]):
            c = cnt[side]
            tot = int(c.sum())
            seg = np.zeros(c.size + 1, dtype=np.int64)
            np.cumsum(c, out=seg[1:])
            idx = np.arange(tot, dtype=np.int64) + np.repeat(start[side] - seg[:-1], c)
            parts.append((np.repeat(p.astype(np.uint64), c) << _U64(32)) | vals[idx])
        w = np.sort(np.concatenate(parts))
        dup = w[1:] == w[:-1]
        inter += np.bincount((w[1:][dup] >> _U64(32)).astype(np.int64), minlength=a.size)
        lo = hi
    union = size - inter
    return np.where(union > 0, inter / np.maximum(union, 1), 1.0)


def clusters_from_pairs(n: int, a: np.ndarray, b: np.ndarray, order: np.ndarray | None = None) -> np.ndarray:
    """Connected components of the pair graph. Returns, for every doc, its representative
    doc: the member that comes first in ``order`` (a permutation of range(n); default
    doc number order)."""
    if order is None:
        order = np.arange(n, dtype=np.int64)
    pos = np.empty(n, dtype=np.int64)
    pos[order] = np.arange(n, dtype=np.int64)
    lab = np.arange(n, dtype=np.int64)  # label space = positions in `order`
    ea, eb = pos[np.asarray(a, dtype=np.int64)], pos[np.asarray(b, dtype=np.int64)]
    while ea.size:
        la, lb = lab[ea], lab[eb]
        diff = la != lb
        if not diff.any():
            break
        la, lb = la[diff], lb[diff]
        lo = np.minimum(la, lb)
        hi = np.maximum(la, lb)
        np.minimum.at(lab, hi, lo)  # hook roots onto smaller labels
        while True:  # pointer jumping to the roots
            nxt = lab[lab]
            if np.array_equal(nxt, lab):
                break
            lab = nxt
        ea, eb = ea[diff], eb[diff]
    return order[lab[pos]]


def _order(ids: np.ndarray, rank: Sequence | None) -> np.ndarray:
    if rank is None:
        return np.argsort(ids, kind="stable")
    rk = np.asarray(rank)
    if rk.shape[0] != ids.shape[0]:
        raise ValueError("rank must have one entry per id")
    return np.lexsort((ids, rk))


def near_duplicate_clusters(con, ids: Sequence[str], texts: Sequence[str] | None = None, *,
                            threshold: float = 0.8, num_perm: int = 128, ngram: int = 5, seed: int = 1,
                            rank: Sequence | None = None, signatures: np.ndarray | None = None,
                            bands: tuple[int, int] | None = None, max_bucket: int = 1000,
                            workers: int | None = None, signatures_table: str | None = None,
                            exact_margin: float | None = 0.07, return_pairs: bool = False):
    """Cluster near-duplicates; returns ``{id: representative id}`` for every id (ids are
    used as strings).

    A cluster is a connected component of pairs that share an LSH band (DuckDB join) and
    whose estimated Jaccard is >= ``threshold``. Its representative (the survivor) is the
    member with the lowest ``rank``, ties broken by the smallest id. Pass ``signatures``
    to skip sketching; ``signatures_table`` also writes (request_id, band, hash) rows to
    that DuckDB table. With ``return_pairs`` it returns ``(mapping, (id_a, id_b, J))``.

    ``exact_margin``: when the texts are given, a candidate whose estimate lies within
    this margin of the threshold is decided by its exact shingle Jaccard instead (128-slot
    estimates have a spread of ~0.03 near 0.8, so pairs there are often misjudged; the
    exact check re-shingles only the documents of those pairs). ``None``/0: estimates
    only (the band join still runs over the signatures alone).
    """
    id_arr = np.asarray([str(i) for i in ids], dtype=str)
    n = id_arr.size
    if np.unique(id_arr).size != n:
        raise ValueError("ids must be unique")
    if signatures is None:
        if texts is None:
            raise ValueError("need texts or signatures")
        if len(texts) != n:
            raise ValueError("ids and texts differ in length")
        signatures = minhash_signatures(texts, num_perm=num_perm, ngram=ngram, seed=seed, workers=workers)
    sigs = np.asarray(signatures)
    num_perm = sigs.shape[1]
    b, r = bands if bands is not None else recall_bands(threshold, num_perm)
    bh = band_hashes(sigs, b, r)
    if signatures_table is not None:
        write_signatures(con, signatures_table, id_arr, bands_matrix=bh)
    # identical signatures: collapse onto the first doc with that signature
    keys = _row_keys(bh)
    order = np.argsort(keys, kind="stable")
    sk = keys[order]
    new_group = np.empty(n, dtype=bool)
    new_group[:1] = True
    np.not_equal(sk[1:], sk[:-1], out=new_group[1:])
    group_first = order[np.flatnonzero(new_group)]  # stable: the first doc of each key
    rep = np.empty(n, dtype=np.int64)
    rep[order] = group_first[np.cumsum(new_group) - 1]
    same = np.flatnonzero(rep != np.arange(n))
    same = same[np.all(sigs[same] == sigs[rep[same]], axis=1)]  # equal keys, yet different signatures?
    uniq = np.setdiff1d(np.arange(n), same, assume_unique=True)
    ca, cb = candidate_pairs(con, bh[uniq], uniq, max_bucket=max_bucket)
    margin = exact_margin if (exact_margin and texts is not None) else 0.0
    va, vb, vj = verified_pairs(sigs, ca, cb, threshold - margin)
    if margin:
        border = np.flatnonzero(vj < threshold + margin)
        ej = exact_jaccard_pairs(texts, va[border], vb[border], ngram)
        vj = vj.astype(float)
        vj[border] = ej
        ok = vj >= threshold - 1e-12
        va, vb, vj = va[ok], vb[ok], vj[ok]
    ea = np.concatenate((rep[same], va))
    eb = np.concatenate((same, vb))
    reps = clusters_from_pairs(n, ea, eb, _order(id_arr, rank))
    mapping = dict(zip(id_arr.tolist(), id_arr[reps].tolist()))
    if return_pairs:
        pj = np.concatenate((np.ones(same.size), vj))
        return mapping, (id_arr[ea].tolist(), id_arr[eb].tolist(), pj.tolist())
    return mapping


# ---------------------------------------------------------------------------------------
# the store's signatures table


_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")


def _check_ident(name: str) -> str:
    if not _IDENT.match(name):
        raise ValueError(f"bad table name {name!r}")
    return name


def write_signatures(con, table: str, ids: Iterable[str], sigs: np.ndarray | None = None, *,
                     threshold: float = 0.8, bands: tuple[int, int] | None = None,
                     bands_matrix: np.ndarray | None = None) -> int:
    """Write LSH band hashes as rows (request_id, band, hash) into ``table`` (created if
    missing); existing rows of these ids are replaced. Returns rows written."""
    import pyarrow as pa

    _check_ident(table)
    id_arr = np.asarray(list(ids), dtype=str)
    if bands_matrix is None:
        if sigs is None:
            raise ValueError("need sigs or bands_matrix")
        b, r = bands if bands is not None else recall_bands(threshold, sigs.shape[1])
        bands_matrix = band_hashes(sigs, b, r)
    n, nb = bands_matrix.shape
    data = pa.table({
        "request_id": pa.array(np.repeat(id_arr, nb).tolist(), pa.string()),
        "band": np.tile(np.arange(nb, dtype=np.int16), n),
        "hash": bands_matrix.reshape(-1),
    })
    name = f"_sig_rows_{uuid.uuid4().hex}"
    con.execute(f"CREATE TABLE IF NOT EXISTS {table} (request_id VARCHAR, band SMALLINT, hash BIGINT)")
    con.register(name, data)
    try:
        con.execute(f"DELETE FROM {table} WHERE request_id IN (SELECT DISTINCT request_id FROM {name})")
        con.execute(f"INSERT INTO {table} (request_id, band, hash) SELECT request_id, band, hash FROM {name}")
    finally:
        con.unregister(name)
    return n * nb


def candidate_pairs_from_table(con, table: str, *, max_bucket: int = 1000) -> list[tuple[str, str]]:
    """LSH candidate pairs (request_id_a < request_id_b) from a stored signatures table."""
    _check_ident(table)
    sql = _PAIRS_SQL.format(src=table, doc="request_id", key="band, hash", mkey="band, hash",
                            max_bucket=int(max_bucket))
    return [tuple(r) for r in con.execute(sql + " ORDER BY a, b").fetchall()]
