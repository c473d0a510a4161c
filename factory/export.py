"""Export a version of the corpus in the formats TRL trains on, with a dataset card.

<workdir>/export/v<N>/
  sft/train-*.parquet          conversational `messages` (assistant: <think>\n…\n</think>\n\n…answer);
                               `verified` (against a reference or tests), else `pseudo_label` / `vote_share`
                               when the trace agrees with its seed's majority vote
  dpo/train-*.parquet          `prompt` / `chosen` / `rejected` from a verified and a failed trace of a seed
  soft_labels/train-*.parquet  per generated token: the teacher's token id and top-k logprobs with their ids (when kept)
  README.md                    the dataset card (YAML metadata + counts, funnel, diversity, sources)

sft/ and dpo/ have a fixed schema (every shard and version the same columns and types) and always
hold at least one shard: an empty split is one 0-row shard. pyarrow, pandas and DuckDB read it;
`datasets` 5.2's load_dataset refuses a split with no rows (huggingface/datasets#8401).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from factory.config import Config
from factory.parse import split_reasoning
from factory.sources import plan_source
from factory.store import Store
from factory.versions import TEXT_FIGURES, baseline_version, compare_versions, version_row


@dataclass
class ExportResult:
    version: int
    path: Path
    counts: dict[str, int]


def assistant_content(text: str, reasoning: str | None, answer: str | None, domain: str,
                      reasoning_field: str | None) -> str:
    """`<think>\\n…\\n</think>\\n\\n…final answer…`, from whichever form the teacher used.

    The reasoning and the written final come from the split the parser reads the answer from
    (factory.parse.split_reasoning): the text after `</think>` (or `[/THINK]`, `◁/think▷`, …), OpenThoughts'
    solution block, gpt-oss's final message, the content beside a reasoning field. A plain chain of thought
    (no delimiter, no reasoning field) is the reasoning (`reasoning`, as stored), and the extracted answer is
    restated; a block that never closed has no final."""
    split, final = split_reasoning(text, reasoning_field)
    if split is not None:
        reasoning, final = split, (final or "").strip()
    elif answer is None:
        final = ""
    else:  # plain chain of thought: the text is the reasoning; restate the extracted answer
        final = f"```python\n{answer}\n```" if domain == "code" else f"The final answer is $\\boxed{{{answer}}}$."
    return f"<think>\n{(reasoning or '').strip()}\n</think>\n\n{final}"


def _messages():
    import datasets

    return datasets.List({"role": datasets.Value("string"), "content": datasets.Value("string")})


def sft_features():
    """The sft split's schema, fixed so that shards (and versions) agree even where a column is all null."""
    import datasets

    text = datasets.Value("string")
    return datasets.Features({"messages": _messages(), "seed_id": text, "request_id": text, "source": text,
                              "domain": text, "teacher": text, "model": text, "template": text, "answer": text,
                              "reference": text, "verified": datasets.Value("bool"), "pseudo_label": text,
                              "vote_share": datasets.Value("float64")})


def dpo_features():
    import datasets

    return datasets.Features({"prompt": _messages(), "chosen": _messages(), "rejected": _messages(),
                              "seed_id": datasets.Value("string"), "source": datasets.Value("string")})


def _write(rows: list[dict], folder: Path, shard_rows: int, features=None) -> int:
    """Parquet shards of `shard_rows`; with `features`, an empty split is still one 0-row shard."""
    import datasets

    if not rows and features is None:
        return 0
    datasets.disable_progress_bars()  # "Creating parquet from Arrow format" per shard is noise in a build's log
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(0, max(len(rows), 1), shard_rows):
        shard = rows[i:i + shard_rows]
        ds = (datasets.Dataset.from_list(shard, features=features) if shard or features is None
              else datasets.Dataset.from_dict({k: [] for k in features}, features=features))
        ds.to_parquet(str(folder / f"train-{i // shard_rows:05d}.parquet"))
    return len(rows)


def export_dir(cfg: Config, version: int) -> Path:
    """Where version N's export lives: <workdir>/<export.dir>/v<N>."""
    return cfg.path(cfg.workdir) / cfg.export.dir / f"v{version}"


def export_version(cfg: Config, version: int | None = None) -> ExportResult:
    with Store(cfg.store_path) as store:
        version, info = version_row(store, version, "counts, funnel, diversity, config_hash")
        counts, funnel, diversity, config_hash = (json.loads(info[0]), json.loads(info[1]),
                                                  json.loads(info[2]), info[3])
        # a pseudo-label is read from the trace's vote (the `majority` verify check), never from `verified`
        base = """SELECT k.request_id, k.seed_id, k.verified, q.messages, q.teacher, q.model, q.template,
                         d.source, d.domain, d.answer AS reference, s.text, s.reasoning AS reasoning_field,
                         p.reasoning, p.answer, s.logprobs, s.finish_reason,
                         CASE WHEN NOT k.verified AND v.reason = 'majority'
                              THEN json_extract_string(v.detail, '$.label') END AS pseudo_label,
                         CASE WHEN NOT k.verified AND v.reason = 'majority'
                              THEN CAST(json_extract(v.detail, '$.share') AS DOUBLE) END AS vote_share
                  FROM kept k JOIN requests q USING (request_id) JOIN responses s USING (request_id)
                  JOIN seeds d ON d.seed_id = k.seed_id JOIN parsed p USING (request_id)
                  LEFT JOIN checks v ON v.request_id = k.request_id AND v."check" = 'verify'
                  WHERE k.version = ? ORDER BY k.seed_id, k.request_id"""
        result = store.con.execute(base, [version])
        columns = [c[0] for c in result.description]
        kept = [dict(zip(columns, r)) for r in result.fetchall()]
        rejected = store.sql("""
            SELECT q.seed_id, s.text, s.reasoning, p.reasoning, p.answer, d.domain, q.request_id
            FROM requests q JOIN responses s USING (request_id) JOIN parsed p USING (request_id)
            JOIN checks c ON c.request_id = q.request_id AND c."check" = 'verify' AND c.passed = FALSE
            JOIN seeds d ON d.seed_id = q.seed_id
            WHERE q.seed_id IN (SELECT seed_id FROM kept WHERE version = ? AND verified)
              AND q.request_id IN (SELECT request_id FROM plan)
            ORDER BY q.seed_id, length(s.text), q.request_id""", [version])
        changes = compare_versions(store, baseline_version(store, version), version)
    out = export_dir(cfg, version)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    sft, soft = [], []
    for r in kept:
        prompt = json.loads(r["messages"])
        content = assistant_content(r["text"], r["reasoning"], r["answer"], r["domain"], r["reasoning_field"])
        sft.append({"messages": prompt + [{"role": "assistant", "content": content}], "seed_id": r["seed_id"],
                    "request_id": r["request_id"], "source": r["source"], "domain": r["domain"],
                    "teacher": r["teacher"], "model": r["model"], "template": r["template"], "answer": r["answer"],
                    "reference": r["reference"], "verified": bool(r["verified"]),
                    "pseudo_label": r["pseudo_label"], "vote_share": r["vote_share"]})
        if r["logprobs"]:
            lps = json.loads(r["logprobs"])
            soft.append({"request_id": r["request_id"], "teacher": r["teacher"], "model": r["model"], "prompt": prompt,
                         "completion": r["text"], "finish_reason": r["finish_reason"],  # "stop": an EOS followed
                         "tokens": [t["token"] for t in lps],
                         "token_ids": [t.get("id") for t in lps] if all("id" in t for t in lps) else None,
                         "logprobs": [float(t["logprob"]) for t in lps],
                         "top_tokens": [[a[0] for a in t.get("top", [])] for t in lps],
                         "top_logprobs": [[float(a[1]) for a in t.get("top", [])] for t in lps],
                         # ids of the top-k (local / vllm teachers store [token, logprob, id]); None: strings only
                         "top_ids": [[int(a[2]) for a in t.get("top", [])] for t in lps]
                         if all(len(a) > 2 for t in lps for a in t.get("top", [])) else None})
    chosen_by_seed = {r["seed_id"]: r for r in sft if r["verified"]}
    dpo, used = [], set()
    for seed_id, text, rfield, reasoning, answer, domain, _ in rejected:
        if seed_id in used or seed_id not in chosen_by_seed:
            continue
        used.add(seed_id)
        chosen = chosen_by_seed[seed_id]
        dpo.append({"prompt": chosen["messages"][:-1], "chosen": [chosen["messages"][-1]],
                    "rejected": [{"role": "assistant", "content": assistant_content(text, reasoning, answer, domain, rfield)}],
                    "seed_id": seed_id, "source": chosen["source"]})
    n = {"sft": _write(sft, out / "sft", cfg.export.shard_rows, sft_features()),
         "dpo": _write(dpo, out / "dpo", cfg.export.shard_rows, dpo_features()),
         "soft_labels": _write(soft, out / "soft_labels", cfg.export.shard_rows)}
    (out / "README.md").write_text(dataset_card(cfg, version, n, counts, funnel, diversity, config_hash, sft, changes),
                                   encoding="utf-8")
    return ExportResult(version, out, n)


def changes_section(changes: dict | None) -> str:
    """The card's diff against its baseline version (factory.versions.compare_versions)."""
    if changes is None or changes["old"] is None:
        return "## Changes\n\nFirst version.\n"
    old, new = f"v{changes['old']}", f"v{changes['new']}"
    since = {"published": " (the last published version)",
             "passed": " (the last version that passed the refresh gates)"}.get(changes.get("old_accepted"), "")

    def pct(x: float | None) -> str:
        return "-" if x is None else f"{x:.1%}"

    rows = [f"| {name} | {c['old']} | {c['new']} | +{c['added']} added, -{c['removed']} removed |"
            for name, c in (("seeds", changes["seeds"]), ("traces", changes["traces"]))]
    v = changes["verified_rate"]
    points = "-" if v["change"] is None else f"{v['change'] * 100:+.1f} pts"
    rows.append(f"| verified rate | {pct(v['old'])} | {pct(v['new'])} | {points} |")
    for key, d in changes["diversity"].items():
        if key not in ("kept", "seeds"):
            rel = "" if d["relative"] is None else f" ({d['relative']:+.1%})"
            rows.append(f"| {key} | {d['old']} | {d['new']} | {d['change']:+g}{rel} |")
    words = changes.get("diversity_gate_words")
    for key, d in changes.get("diversity_gate", {}).items():  # raw distinct-n falls as a corpus grows: these do not
        if key in TEXT_FIGURES and words and None not in (d["old"], d["new"]):
            moved = "-" if d["drop"] is None else f"{d['drop']:+.1%} towards collapse"
            rows.append(f"| {key}, {words:,} words of each | {d['old']} | {d['new']} | {moved} |")
    return (f"## Changes since {old}{since}\n\n| | {old} | {new} | change |\n| --- | --- | --- | --- |\n"
            + "\n".join(rows) + "\n")


def kept_line(counts: dict, sft: list[dict]) -> str:
    """What the card says about how the kept traces were checked (an empty version says so first)."""
    if not counts.get("kept"):
        return "**This version keeps no traces**: its splits are empty (see the funnel for why)."
    pseudo = sum(1 for r in sft if r["pseudo_label"] is not None)
    return (f"Verified traces kept: {counts.get('verified', 0)} of {counts.get('kept', 0)}"
            + (f"; {pseudo} more agree with their seed's majority vote (`pseudo_label`, `vote_share`), "
               "which is not a verification" if pseudo else "") + ".")


def dataset_card(cfg: Config, version: int, n: dict, counts: dict, funnel: dict, diversity: dict,
                 config_hash: str, sft: list[dict], changes: dict | None = None) -> str:
    import yaml

    licences = {}
    for s in cfg.sources:
        try:
            licences[s.name] = plan_source(s, cfg.base_dir).licence or "unknown"
        except Exception:
            licences[s.name] = s.licence or "unknown"
    configs = [{"config_name": name, "data_files": [{"split": "train", "path": f"{name}/*.parquet"}]}
               for name in ("sft", "dpo", "soft_labels") if n[name] or name != "soft_labels"]  # sft, dpo: always
    meta = {"license": "other", "language": ["en"], "tags": ["reasoning", "chain-of-thought", "distillation",
                                                              "synthetic", "factory"],
            "task_categories": ["text-generation"], "configs": configs,
            "size_categories": ["n<1K" if n["sft"] < 1000 else "1K<n<10K" if n["sft"] < 10_000 else "10K<n<100K"]}
    funnel_rows = "\n".join(f"| {stage} | {sum(r.values())} | " + ", ".join(f"{k}: {v}" for k, v in r.items()) + " |"
                            for stage, r in funnel.items())
    teachers = "\n".join(f"| {t.name} | {t.backend} | {t.model} |" for t in cfg.teachers)
    origin = {s.name: Path(s.path).name if s.path else "reasoning_gym: " + (s.task or ", ".join(s.tasks or {}))
              for s in cfg.sources}  # a reasoning_gym source has no path
    sources = "\n".join(f"| {s.name} | `{origin[s.name]}` | {licences[s.name]} |" for s in cfg.sources)
    templates = sorted({r["template"] for r in sft})
    div = "\n".join(f"| {k} | {v} |" for k, v in diversity.items())
    hub = (f'load_dataset("{cfg.publish.repo_id}", "sft", split="train")' if cfg.publish.repo_id
           else 'load_dataset(repo_id, "sft", split="train")')
    return f"""---
{yaml.safe_dump(meta, sort_keys=False).strip()}
---

# Reasoning traces (version {version})

Built with factory from {counts.get('seeds', 0)} seed problems: each trace is a
teacher's chain of thought (`<think>…</think>`) and final answer, parsed, verified, deduplicated,
decontaminated against benchmark test sets and selected per seed.

```python
from datasets import load_dataset
sft = {hub}   # configs: {', '.join(c['config_name'] for c in configs)}
local = load_dataset("parquet", data_files="sft/*.parquet", split="train")   # from a downloaded copy
```

| split | rows |
| --- | --- |
| sft | {n['sft']} |
| dpo | {n['dpo']} |
| soft_labels | {n['soft_labels']} |

{kept_line(counts, sft)}

## Filter funnel ({counts.get('candidates', 0)} candidate traces)

| stage | dropped | why |
| --- | --- | --- |
{funnel_rows}

## Diversity

| figure | value |
| --- | --- |
{div}

{changes_section(changes)}
## Teachers

| name | backend | model |
| --- | --- | --- |
{teachers}

Templates: {', '.join(templates) or 'none'}.

## Sources

| source | file | licence |
| --- | --- | --- |
{sources}

Config hash: `{config_hash}`.
"""
