"""`factory eval`: pass@1 / pass@k of a model on a benchmark set, scored like the filter stage.

The pieces are the build's and the filter's: items come from the benchmark file through the
source presets (sources.py), prompts from the same templates (prompts/), answers from the same
teacher backends (local / openai / vllm), final answers from factory.parse, and verdicts from
the filter stage's checks (math-verify in worker processes; the code sandbox, with the item's
prompt prepended). Nothing touches the project store: results stay in memory and go to one
JSON report per model, <workdir>/<eval.output_dir>/<benchmark>-<model>-<timestamp>.json.

pass@k is the unbiased estimator of the Codex paper (Chen et al. 2021): an item with n samples
of which c are correct scores 1 - C(n-c, k) / C(n, k); the set's score is the mean over items.
pass@1 is then the mean share of correct samples.

Several models (`factory eval -m base -m trained`, the first is "before") are compared side by side:
pass@1 and pass@k of each, and a warning when a later model's pass@k falls below the first's while
its pass@1 rises: training made the model surer of fewer solutions (its samples collapsed onto the
same answers), so it solves fewer problems in k tries. The comparison is written beside the reports,
<workdir>/<eval.output_dir>/comparisons/<benchmark>-<timestamp>.json and .md.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from math import comb
from pathlib import Path

from rich.console import Console
from rich.table import Table

from factory.config import Config, SourceConfig
from factory.errors import EvalError, FactoryError
from factory.progress import WorkProgress
from factory.prompts import PromptError, Prompts
from factory.records import Request, Response, Seed
from factory.sources import BadRow, SourceError, plan_source, read_seeds

PRESET_OF = {"gsm8k_test": "gsm8k", "math500": "math500", "humaneval": "humaneval"}  # eval.benchmark -> sources preset
SHOW_BAD_ROWS = 5  # skipped rows printed one per line; the rest are counted


@dataclass
class ItemResult:
    id: str
    reference: str | None  # the reference answer (math); None for code (the tests decide)
    correct: int  # samples that passed
    answers: list[str | None]  # the parsed final answer of each sample
    reasons: list[str]  # why each sample passed or failed: passed, wrong_answer, no_answer, tests_failed, ...
    details: list[str]  # the verifier's detail, or the generation error
    outputs: list[str | None]  # the raw completions


@dataclass
class EvalReport:
    model: str
    backend: str
    benchmark: str
    path: str
    template: str
    n_items: int
    k: int  # samples per item
    sampling: dict
    pass_at_1: float
    pass_at_k: float
    pass_at: dict[int, float]  # pass@1, @2, @4, ... @k
    correct_samples: int
    generation_errors: int
    skipped_rows: int
    prompt_tokens: int
    completion_tokens: int
    wall_s: float
    created_at: str
    items: list[ItemResult] = field(default_factory=list)
    report_path: str | None = None
    comparison_path: str | None = None  # the side-by-side comparison this report is part of (several models)

    def to_json(self) -> dict:
        """The report file: the headline numbers first, then every item."""
        return {"model": self.model, "backend": self.backend, "benchmark": self.benchmark, "path": self.path,
                "template": self.template, "n_items": self.n_items, "k": self.k, "pass@1": self.pass_at_1,
                "pass@k": self.pass_at_k, "pass_at": {str(k): v for k, v in self.pass_at.items()},
                "correct_samples": self.correct_samples, "generation_errors": self.generation_errors,
                "skipped_rows": self.skipped_rows,
                "tokens": {"prompt": self.prompt_tokens, "completion": self.completion_tokens},
                "wall_s": self.wall_s, "created_at": self.created_at, "sampling": self.sampling,
                "items": [asdict(it) for it in self.items]}


def pass_at_k(n: int, c: int, k: int) -> float:
    """Probability that at least one of k samples drawn from n (c of them correct) is correct."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n, got n={n} c={c} k={k}")
    return 1.0 - comb(n - c, k) / comb(n, k)


def _ks(n: int) -> list[int]:
    return sorted({2 ** i for i in range(n.bit_length()) if 2 ** i <= n} | {n})


# -- items ---------------------------------------------------------------------------------------

@dataclass
class Benchmark:
    path: Path
    seeds: list[Seed]  # the items, deduplicated, up to eval.limit
    messages: list[tuple[dict[str, str], ...]]  # each item's rendered prompt
    template: str
    skipped: list[BadRow]  # rows that could not become an item


def load_benchmark(cfg: Config, console: Console) -> Benchmark:
    """Read eval.benchmark's file through its source preset and render every item's prompt."""
    from factory.build import DEFAULT_TEMPLATES
    from factory.config import project_file

    e = cfg.eval
    key = "eval.path" if e.path else f"filter.benchmarks.{e.benchmark}"
    rel = e.path or cfg.filter.benchmarks.get(e.benchmark)
    if not rel:
        raise EvalError(f"eval.path: no file for benchmark '{e.benchmark}' (set eval.path or filter.benchmarks.{e.benchmark})")
    path = project_file(cfg, rel)
    if not path.exists():
        raise EvalError(f"{key}: {path}: no such file")
    source = SourceConfig(name=e.benchmark, path=str(path), preset=PRESET_OF[e.benchmark], limit=e.limit)
    seeds, bad, seen = [], [], set()
    try:
        plan = plan_source(source, cfg.base_dir)
        for item in read_seeds(plan):
            if isinstance(item, Seed) and item.domain == "math" and item.answer is None:
                item = BadRow(path.name, item.meta["row"], plan.fields.get("answer"), "no reference answer")
            if isinstance(item, BadRow):
                bad.append(item)
                if len(bad) <= SHOW_BAD_ROWS:
                    console.print(f"[yellow]skipped[/] {item}", highlight=False)
            elif item.seed_id not in seen:  # a repeated problem would be asked (and counted) twice
                seen.add(item.seed_id)
                seeds.append(item)
    except (SourceError, OSError, EOFError) as err:
        raise EvalError(f"{key}: {path}: {err}") from None
    if not seeds:
        raise EvalError(f"{key}: {path}: no usable items" + (f" ({len(bad)} bad rows; first: {bad[0]})" if bad else ""))
    template = e.template or DEFAULT_TEMPLATES[seeds[0].domain]
    try:
        prompts = Prompts(cfg.path(cfg.prompts_dir))
        messages = [prompts.render(template, seed) for seed in seeds]
    except PromptError as err:
        raise EvalError(str(err)) from None
    return Benchmark(path, seeds, messages, template, bad)


def _item_id(benchmark: str, seed: Seed) -> str:
    return str(seed.meta.get("id") or f"{benchmark}/{seed.meta['row']}")


# -- one model -----------------------------------------------------------------------------------

def _generate(cfg: Config, model: str, requests: list[Request], console: Console) -> dict[str, Response]:
    """Every request's response, by request_id, with a progress bar."""
    from factory.teachers import make_teacher

    tcfg = cfg.eval.teacher.model_copy(update={"model": model})  # eval.teacher, asked for `-m` model
    backend = tcfg.backend
    out: dict[str, Response] = {}
    teacher = make_teacher(tcfg)
    try:
        with WorkProgress(console, f"{model} ({backend})", len(requests), cfg.build.progress_interval_s) as progress:
            for response in teacher.generate(iter(requests)):
                out[response.request_id] = response
                progress.advance(response.ok, response.completion_tokens or 0)
    except (FactoryError, ImportError, FileNotFoundError) as err:
        raise EvalError(f"model {model} ({backend}): {err}") from None
    finally:
        close = getattr(teacher, "close", None)
        if close:
            close()
    if not any(r.ok for r in out.values()):  # the model cannot answer at all (load failed, endpoint refuses)
        first = next((r.error for r in out.values()), None) or "no response"
        raise EvalError(f"model {model} ({backend}): every request failed, e.g. {first.splitlines()[0]}")
    return out


def _verify(cfg: Config, seeds: list[Seed], todo: dict[tuple[int, int], str],
            console: Console) -> dict[tuple[int, int], tuple[bool, str, str]]:
    """(item, sample) -> (passed, reason, detail) for every parsed answer, with the filter stage's checks."""
    from factory.checks.verify import check_code, check_math

    if not todo:
        return {}
    domain = seeds[0].domain
    if domain == "code":
        verdicts = check_code(((key, seeds[key[0]].problem, answer, seeds[key[0]].tests, seeds[key[0]].entry_point)
                               for key, answer in todo.items()),
                              wall_s=cfg.filter.sandbox_wall_s, workers=cfg.filter.verify_workers,
                              allow_weak=cfg.filter.code.allow_weak_sandbox, max_cases=cfg.filter.code.max_cases)
        what = "verify (code sandbox)"
    else:
        # the problem goes along: a choice answered by its option's value is read against the options in it
        verdicts = check_math(((key, answer, seeds[key[0]].answer, seeds[key[0]].problem)
                               for key, answer in todo.items()),
                              timeout_s=cfg.filter.verify_timeout_s, workers=cfg.filter.verify_workers)
        what = "verify (math-verify)"
    out = {}
    with WorkProgress(console, what, len(todo), cfg.build.progress_interval_s, unit="answers") as progress:
        for key, passed, reason, detail in verdicts:
            out[key] = (passed, reason, detail)
            progress.advance()
    return out


def evaluate_model(cfg: Config, model: str, bench: Benchmark, console: Console) -> EvalReport:
    """Generate k samples per item, parse the final answers, verify them, and score."""
    from factory.parse import parse

    e = cfg.eval
    started = time.monotonic()
    seeds = bench.seeds
    params = {**e.generation.model_dump(), "logprobs": 0}  # temperature, top_p, max_tokens
    requests = [Request(seed.seed_id, "eval", model, bench.template, bench.messages[i], params, j)
                for i, seed in enumerate(seeds) for j in range(e.samples)]
    responses = _generate(cfg, model, requests, console)
    slots: dict[tuple[int, int], dict] = {}
    todo: dict[tuple[int, int], str] = {}
    for n, r in enumerate(requests):
        key = (n // e.samples, r.sample_index)
        resp = responses.get(r.request_id)
        if resp is None or not resp.ok:
            error = resp.error if resp is not None else "no response"
            slots[key] = {"answer": None, "passed": False, "reason": "generation_error", "detail": error[:300],
                          "output": None}
            continue
        p = parse(resp.text, resp.reasoning, seeds[key[0]].domain, resp.finish_reason)
        slots[key] = {"answer": p.answer, "passed": False, "reason": p.error or "no_answer", "detail": "",
                      "output": resp.text}
        if p.answer is not None:
            todo[key] = p.answer
    for key, (passed, reason, detail) in _verify(cfg, seeds, todo, console).items():
        slots[key].update(passed=passed, reason=reason, detail=detail[-300:])
    items = []
    for i, seed in enumerate(seeds):
        samples = [slots[(i, j)] for j in range(e.samples)]
        items.append(ItemResult(
            id=_item_id(e.benchmark, seed), reference=seed.answer,
            correct=sum(s["passed"] for s in samples),
            answers=[s["answer"] for s in samples], reasons=[s["reason"] for s in samples],
            details=[s["detail"] for s in samples], outputs=[s["output"] for s in samples]))
    n = e.samples
    pass_at = {k: round(sum(pass_at_k(n, it.correct, k) for it in items) / len(items), 6) for k in _ks(n)}
    ok = [r for r in responses.values() if r.ok]
    return EvalReport(
        model=model, backend=e.teacher.backend, benchmark=e.benchmark, path=str(bench.path), template=bench.template,
        n_items=len(items), k=n,
        sampling={k: v for k, v in params.items() if k != "logprobs"}, pass_at_1=pass_at[1], pass_at_k=pass_at[n],
        pass_at=pass_at, correct_samples=sum(it.correct for it in items),
        generation_errors=sum(not r.ok for r in responses.values()) + len(requests) - len(responses),
        skipped_rows=len(bench.skipped),
        prompt_tokens=sum(r.prompt_tokens or 0 for r in ok), completion_tokens=sum(r.completion_tokens or 0 for r in ok),
        wall_s=round(time.monotonic() - started, 3), created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        items=items)


# -- the command ---------------------------------------------------------------------------------

def model_slug(model: str) -> str:
    """A file-name-safe short name: the last two parts of a folder or Hub name."""
    tail = "-".join(Path(model.rstrip("/")).parts[-2:]).lstrip("/")
    return re.sub(r"[^A-Za-z0-9._-]+", "-", tail).strip("-.")[-80:] or "model"


def write_report(report: EvalReport, out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    blob = json.dumps(report.to_json(), indent=1, ensure_ascii=False)
    for n in range(1, 1000):  # the same model twice within a second gets -2, -3, ...
        path = out_dir / f"{report.benchmark}-{model_slug(report.model)}-{stamp}{'' if n == 1 else f'-{n}'}.json"
        try:
            with path.open("x", encoding="utf-8") as f:
                f.write(blob)
            return path
        except FileExistsError:
            continue
    raise EvalError(f"{out_dir}: cannot find a free report name for {report.model}")


def collapse_warnings(reports: list[EvalReport]) -> list[str]:
    """One line per model after the first whose pass@k fell below the first's while its pass@1 rose
    (a diversity collapse); nothing when k is 1 (pass@k is then pass@1)."""
    if len(reports) < 2 or reports[0].k < 2:
        return []
    before, out = reports[0], []
    for after in reports[1:]:
        if after.pass_at_1 > before.pass_at_1 and after.pass_at_k < before.pass_at_k:
            out.append(f"{after.model}: pass@{after.k} fell {before.pass_at_k:.3f} -> {after.pass_at_k:.3f} while pass@1 "
                       f"rose {before.pass_at_1:.3f} -> {after.pass_at_1:.3f} against {before.model}: its samples "
                       f"collapsed onto fewer solutions (diversity collapse)")
    return out


def comparison(reports: list[EvalReport]) -> dict:
    """pass@1 and pass@k of each model side by side, the change against the first, and the warnings."""
    first = reports[0]
    return {"benchmark": first.benchmark, "n_items": first.n_items, "k": first.k, "sampling": first.sampling,
            "before": first.model,
            "models": [{"model": r.model, "pass@1": r.pass_at_1, "pass@k": r.pass_at_k,
                        "delta_pass@1": round(r.pass_at_1 - first.pass_at_1, 6),
                        "delta_pass@k": round(r.pass_at_k - first.pass_at_k, 6), "report": r.report_path}
                       for r in reports],
            "warnings": collapse_warnings(reports)}


def comparison_markdown(data: dict) -> str:
    k = data["k"]
    lines = [f"# eval: {data['benchmark']}, {data['n_items']} items, k={k}", "",
             f"Each model against the first ({data['before']}).", "",
             f"| model | pass@1 | pass@{k} | change pass@1 | change pass@{k} |", "| --- | ---: | ---: | ---: | ---: |"]
    for n, m in enumerate(data["models"]):
        change = ("", "") if n == 0 else (f"{m['delta_pass@1']:+.3f}", f"{m['delta_pass@k']:+.3f}")
        lines.append(f"| {m['model']} | {m['pass@1']:.3f} | {m['pass@k']:.3f} | {change[0]} | {change[1]} |")
    lines += [""] + [f"> **warning** {w}" for w in data["warnings"]]
    return "\n".join(lines).rstrip() + "\n"


def write_comparison(reports: list[EvalReport], out_dir: Path) -> Path:
    """<out_dir>/<benchmark>-<timestamp>.json and .md; returns the JSON's path."""
    data = comparison(reports)
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    for n in range(1, 1000):
        path = out_dir / f"{data['benchmark']}-{stamp}{'' if n == 1 else f'-{n}'}.json"
        try:
            with path.open("x", encoding="utf-8") as f:
                f.write(json.dumps(data, indent=1, ensure_ascii=False))
        except FileExistsError:
            continue
        path.with_suffix(".md").write_text(comparison_markdown(data), encoding="utf-8")
        return path
    raise EvalError(f"{out_dir}: cannot find a free comparison name")


def evaluate(cfg: Config, models: list[str], console: Console | None = None) -> list[EvalReport]:
    """Score each model on eval.benchmark; writes one JSON report per model (and, for several models, their
    comparison) and returns the reports."""
    console = console or Console(stderr=True)
    if not models:
        raise EvalError("no model to evaluate (pass --model or set train.model)")
    e = cfg.eval
    bench = load_benchmark(cfg, console)
    skipped = len(bench.skipped)
    console.print(f"eval: {e.benchmark} ({bench.path.name}): {len(bench.seeds)} items, k={e.samples}, "
                  f"temperature {e.generation.temperature:g}" + (f", {skipped} rows skipped" if skipped else ""),
                  highlight=False)
    if e.samples > 1 and e.generation.temperature == 0:
        console.print("[yellow]note[/] eval.generation.temperature is 0 (greedy): the k samples are the same, "
                      "so pass@k = pass@1", highlight=False)
    reports = []
    for model in models:
        report = evaluate_model(cfg, model, bench, console)
        report.report_path = str(write_report(report, cfg.path(cfg.workdir) / e.output_dir))
        reports.append(report)
    if len(reports) > 1:
        path = str(write_comparison(reports, cfg.path(cfg.workdir) / e.output_dir / "comparisons"))
        for report in reports:
            report.comparison_path = path
    return reports


def print_eval_table(reports: list[EvalReport], console: Console) -> None:
    """One row per model; with two models, a before/after table and the delta."""
    if not reports:
        return
    first = reports[0]
    k = first.k
    table = Table(title=f"eval: {first.benchmark}, {first.n_items} items, k={k}")
    before_after = len(reports) == 2
    if before_after:
        table.add_column("")
    table.add_column("model", overflow="fold")  # a long folder name wraps, never loses its end
    for name in ("pass@1",) + ((f"pass@{k}",) if k > 1 else ()) + ("correct", "errors", "tokens out", "wall"):
        table.add_column(name, justify="right", no_wrap=True)
    for n, r in enumerate(reports):
        row = [r.model, f"{r.pass_at_1:.3f}"] + ([f"{r.pass_at_k:.3f}"] if k > 1 else [])
        row += [f"{r.correct_samples}/{r.n_items * r.k}", str(r.generation_errors), f"{r.completion_tokens:,}",
                f"{r.wall_s:,.1f} s"]
        table.add_row(*((["before" if n == 0 else "after"] if before_after else []) + row))
    if before_after:
        a, b = reports

        def delta(x: float) -> str:
            return f"[{'green' if x > 0 else 'red' if x < 0 else 'default'}]{x:+.3f}[/]"

        table.add_row("delta", "", delta(b.pass_at_1 - a.pass_at_1), *([delta(b.pass_at_k - a.pass_at_k)] if k > 1 else []),
                      f"{b.correct_samples - a.correct_samples:+d}", "", "", "")
    console.print(table)
    for line in collapse_warnings(reports):
        console.print(f"[yellow]warning[/] {line}", highlight=False)
    if len(reports) > 1 and k == 1:
        console.print("note: with eval.samples 1 there is no pass@k to compare; set eval.samples > 1 (and "
                      "eval.generation.temperature > 0) to see whether training collapsed the samples", highlight=False)
    for r in reports:
        console.print(f"report -> {r.report_path}", highlight=False)
    if first.comparison_path:
        console.print(f"comparison -> {first.comparison_path} (.md beside it)", highlight=False)
