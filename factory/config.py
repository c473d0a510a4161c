"""Configuration: pydantic v2 models (extra="forbid"), a YAML file plus `--set a.b=c` overrides.

Secrets never live here: a teacher names the environment variable that holds its key
(`api_key_env`), and the key is read from the environment only when the teacher starts.
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator


class ConfigError(ValueError):
    """A one-line, user-facing configuration error."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SourceConfig(Strict):
    name: str
    path: str  # a JSONL / JSON / Parquet file, or an HF dataset (local folder or Hub name) with format: hf
    format: Literal["jsonl", "json", "parquet", "hf"] | None = None  # None: from the file extension
    preset: Literal["gsm8k", "math500", "humaneval"] | None = None  # a shipped field mapping
    # record field -> a source column, or a jinja expression over the row ("{{ Body }} {{ Question }}",
    # `row["Question Text"]` for column names that are not identifiers)
    fields: dict[str, str] = Field(default_factory=dict)
    # reference extraction from the answer field: at most one of these three (a preset's is replaced)
    answer_after: str | None = None  # the text after the LAST marker ("####")
    answer_boxed: bool = False  # the content of the LAST non-empty \boxed{} (a worked solution)
    answer_regex: str | None = None  # the first group (or the whole match) of the LAST match
    strip_units: bool = False  # then drop units, currency and thousands separators: "9 (apples)" -> "9"
    # stop the build when a larger share of this source's math references cannot be verified against
    max_unusable_references: float = Field(default=0.05, ge=0, le=1)
    domain: Literal["math", "code"] | None = None
    split: str = "train"  # HF datasets only
    limit: int | None = Field(default=None, ge=1)
    template: str | None = None  # default: math_cot.jinja / code_cot.jinja by domain
    licence: str | None = None

    @field_validator("answer_regex")
    @classmethod
    def _regex_compiles(cls, pattern: str | None) -> str | None:
        if pattern is not None:
            import re

            try:
                re.compile(pattern)
            except re.error as e:
                raise ValueError(f"not a regular expression: {e}") from None
        return pattern

    @model_validator(mode="after")
    def _one_answer_extraction(self) -> SourceConfig:
        chosen = [k for k in ("answer_after", "answer_regex") if getattr(self, k)] + (
            ["answer_boxed"] if self.answer_boxed else [])
        if len(chosen) > 1:
            raise ValueError(f"source '{self.name}': choose one of {' / '.join(chosen)} to extract the reference")
        return self


class TeacherConfig(Strict):
    name: str
    backend: Literal["local", "openai", "vllm"] = "local"
    model: str = "embedded"  # local/vllm: "embedded", a folder or a Hub name; openai: the API's model name
    # openai-compatible endpoints
    base_url: str | None = None
    api_key_env: str | None = "OPENAI_API_KEY"
    max_concurrency: int = Field(default=64, ge=1)
    rpm: int | None = Field(default=None, ge=1)  # requests per minute
    tpm: int | None = Field(default=None, ge=1)  # tokens per minute (prompt + completion)
    timeout_s: float = Field(default=120.0, gt=0)
    max_retries: int = Field(default=6, ge=0)
    generate: bool = True  # false: a judge or student only, asked for no traces of its own
    use_n: bool = True  # ask for all samples of one prompt in one call (n=k) where the server honours it
    extra_body: dict[str, Any] = Field(default_factory=dict)
    # local (transformers) and vllm
    batch_size: int = Field(default=32, ge=1)
    device: str = "cpu"
    engine_args: dict[str, Any] = Field(default_factory=dict)  # vllm.LLM(**engine_args)
    chunk_size: int = Field(default=1024, ge=1)  # vllm: requests per generate() call
    # cost accounting (USD per million tokens)
    price_in_per_mtok: float | None = None
    price_out_per_mtok: float | None = None


class GenerationConfig(Strict):
    samples_per_seed: int = Field(default=2, ge=1)
    temperature: float = Field(default=0.7, ge=0)
    top_p: float = Field(default=0.95, gt=0, le=1)
    max_tokens: int = Field(default=512, ge=1)
    logprobs: int = Field(default=0, ge=0, le=20)  # keep the top-k logprobs per token (0: off)

    def params(self) -> dict[str, Any]:
        """Sampling params as they enter the request hash (samples_per_seed does not)."""
        return self.model_dump(exclude={"samples_per_seed"})


class BuildConfig(Strict):
    max_failure_rate: float = Field(default=0.05, ge=0, le=1)  # exit non-zero above this
    progress_interval_s: float = Field(default=30.0, gt=0)  # off a terminal: one progress line this often


class QualityConfig(Strict):
    """Per-domain keep rules for a trace (decided in filters/quality.sql)."""

    require_reasoning: bool = True  # a trace needs reasoning: a <think> block, a reasoning field, or text before the answer
    min_reasoning_words: int = Field(default=5, ge=0)
    max_reasoning_words: int = Field(default=8000, ge=1)
    max_repetition: float = Field(default=0.5, ge=0, le=1)  # share of repeated word 4-grams in the reasoning
    allow_truncated: bool = False
    # math only: an LLM judge (a teacher's name) for the pairs the symbolic verifier cannot decide
    judge: str | None = None
    judge_template: str = "judge.jinja"
    judge_max_tokens: int = Field(default=512, ge=1)


class CodeQualityConfig(QualityConfig):
    """Keep rules for code traces, and how far the code sandbox may be trusted."""

    # run code checks even where the sandbox cannot isolate a candidate (not root, no user
    # namespaces, no Landlock + seccomp): a candidate could then kill the factory or leave
    # processes behind (docs/sandbox.md)
    allow_weak_sandbox: bool = False


class FilterConfig(Strict):
    math: QualityConfig = Field(default_factory=QualityConfig)
    code: CodeQualityConfig = Field(default_factory=CodeQualityConfig)
    require_verified: bool = False  # keep only verified traces (else: verified first, then unverified)
    verify_timeout_s: float = Field(default=5.0, gt=0)
    verify_workers: int = Field(default=2, ge=1)
    # seeds without a reference: a pseudo-label needs this many samples that gave an answer, and this share of
    # them agreeing (no tie); the defaults keep >= 0.95 of pseudo-labelled traces right at 4 samples per seed in
    # benchmarks/majority.py (README: Majority vote). Pseudo-labelled traces are never `verified`.
    majority_min_samples: int = Field(default=3, ge=1)
    majority_min_share: float = Field(default=0.8, gt=0, le=1)
    sandbox_wall_s: float = Field(default=10.0, gt=0)
    minhash_threshold: float = Field(default=0.8, gt=0, le=1)  # Jaccard for near duplicates
    minhash_perm: int = Field(default=128, ge=16)
    minhash_ngram: int = Field(default=5, ge=1)
    decontam_ngram: int = Field(default=13, ge=4)
    benchmarks: dict[str, str] = Field(default_factory=lambda: {
        "gsm8k_test": "data/benchmarks/gsm8k_test.jsonl",
        "math500": "data/benchmarks/math500_test.jsonl",
        "humaneval": "data/benchmarks/humaneval.jsonl.gz"})
    per_seed: int = Field(default=1, ge=1)  # traces kept per seed
    prefer: Literal["shortest", "diverse"] = "shortest"  # after verified-first


class ExportConfig(Strict):
    dir: str = "export"  # relative to workdir
    shard_rows: int = Field(default=50_000, ge=1)


class LoraConfig(Strict):
    enabled: bool = False
    r: int = Field(default=16, ge=1)
    alpha: int = Field(default=32, ge=1)
    dropout: float = Field(default=0.05, ge=0, lt=1)
    target_modules: list[str] | str = "all-linear"


class DPOSection(Strict):
    beta: float = Field(default=0.1, gt=0)
    loss_type: str = "sigmoid"  # TRL's DPOConfig.loss_type
    ref_model: str | None = None  # default: a frozen copy of the starting model


class DistillSection(Strict):
    mode: Literal["soft_labels", "on_policy"] = "soft_labels"
    # soft_labels: the teacher's stored top-k logprobs (no teacher at training time)
    # on_policy: TRL's DistillationTrainer with this teacher model (same tokenizer as the student)
    teacher_model: str = "embedded"
    loss: Literal["forward_kl", "reverse_kl", "jsd"] = "forward_kl"
    jsd_beta: float = Field(default=0.5, ge=0, le=1)  # jsd interpolation weight
    temperature: float = Field(default=1.0, gt=0)
    lmbda: float = Field(default=0.5, ge=0, le=1)  # on_policy: share of batches the student generates
    max_new_tokens: int = Field(default=128, ge=1)  # on_policy: length of student samples
    sft_weight: float = Field(default=0.0, ge=0)  # soft_labels: add this times the hard-label NLL


class TrainConfig(Strict):
    """`factory train sft | dpo | distill`: TRL trainers over an exported version."""

    model: str = "embedded"  # the student: "embedded", a folder, or a Hub name
    data: str | None = None  # an export folder (with sft/ dpo/ soft_labels/); default: the version's export
    version: int | None = None  # default: the latest version (exported first if needed)
    output_dir: str = "models"  # relative to workdir; a run writes <output_dir>/<method>-v<version>
    max_length: int = Field(default=1024, ge=8)
    epochs: float = Field(default=1.0, gt=0)
    max_steps: int = -1  # > 0 overrides epochs
    batch_size: int = Field(default=8, ge=1)
    grad_accum: int = Field(default=1, ge=1)
    learning_rate: float = Field(default=2e-5, gt=0)
    lr_scheduler: str = "cosine"
    warmup_ratio: float = Field(default=0.03, ge=0, le=1)
    weight_decay: float = Field(default=0.0, ge=0)
    packing: bool = False
    padding_free: bool = False
    gradient_checkpointing: bool = False
    bf16: bool | None = None  # None: bf16 on a GPU that supports it, fp32 on CPU
    chat_template: str | None = None  # a jinja file replacing the tokenizer's chat template
    seed: int = 42
    logging_steps: int = Field(default=10, ge=1)
    save_strategy: Literal["no", "steps", "epoch"] = "no"
    lora: LoraConfig = Field(default_factory=LoraConfig)
    dpo: DPOSection = Field(default_factory=DPOSection)
    distill: DistillSection = Field(default_factory=DistillSection)
    hub_repo_id: str | None = None  # `--push-to-hub` target (token from HF_TOKEN)
    extra: dict[str, Any] = Field(default_factory=dict)  # passed verbatim to the TRL config


class EvalConfig(Strict):
    """`factory eval`: pass@1 / pass@k on a benchmark set with the filter stage's verifiers."""

    benchmark: Literal["gsm8k_test", "math500", "humaneval"] = "gsm8k_test"
    path: str | None = None  # default: filter.benchmarks[benchmark]
    limit: int | None = Field(default=50, ge=1)
    samples: int = Field(default=1, ge=1)  # k in pass@k (pass@1 is averaged over the k samples)
    temperature: float = Field(default=0.0, ge=0)  # 0: greedy (then samples should be 1)
    top_p: float = Field(default=0.95, gt=0, le=1)
    max_tokens: int = Field(default=512, ge=1)
    template: str | None = None  # default: math_cot.jinja / code_cot.jinja by domain
    backend: Literal["local", "openai", "vllm"] = "local"
    base_url: str | None = None
    api_key_env: str | None = "OPENAI_API_KEY"
    batch_size: int = Field(default=32, ge=1)
    max_concurrency: int = Field(default=64, ge=1)
    device: str = "cpu"
    output_dir: str = "eval"  # relative to workdir


class PublishConfig(Strict):
    repo_id: str | None = None  # "user/name"; required to publish
    private: bool = True
    token_env: str = "HF_TOKEN"  # else the user's huggingface_hub login
    branch: str = "main"
    # refuse (unless --force) a version that keeps fewer than (1 - max_shrink) x the traces of the last published
    # version; a version with no kept traces is always refused. None: no shrink check (empty is still refused)
    max_shrink: float | None = Field(default=0.5, ge=0, le=1)


class GatesConfig(Strict):
    """A refreshed version is published only if every gate passes (compared with the last published one)."""

    min_verified_rate: float | None = Field(default=None, ge=0, le=1)  # verified / kept
    max_diversity_drop: float | None = Field(default=0.1, ge=0)  # relative drop allowed per diversity figure
    max_contamination: int | None = Field(default=0, ge=0)  # kept traces whose problem or trace matches a benchmark
    min_size: int | None = Field(default=1, ge=0)  # kept traces


class RefreshConfig(Strict):
    publish: bool = True  # push a version that passes the gates (needs publish.repo_id)
    gates: GatesConfig = Field(default_factory=GatesConfig)


class Config(Strict):
    workdir: str = ".factory"  # relative to the config file's folder
    prompts_dir: str = "prompts"
    sources: list[SourceConfig]
    teachers: list[TeacherConfig] = Field(default_factory=lambda: [TeacherConfig(name="smollm2")])
    generation: GenerationConfig = Field(default_factory=GenerationConfig)
    build: BuildConfig = Field(default_factory=BuildConfig)
    filter: FilterConfig = Field(default_factory=FilterConfig)
    export: ExportConfig = Field(default_factory=ExportConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    publish: PublishConfig = Field(default_factory=PublishConfig)
    refresh: RefreshConfig = Field(default_factory=RefreshConfig)

    # where relative paths resolve; set by load_config, not part of the file
    base_dir: Path = Field(default=Path("."), exclude=True)

    @field_validator("teachers")
    @classmethod
    def _unique_teachers(cls, teachers: list[TeacherConfig]) -> list[TeacherConfig]:
        names = [t.name for t in teachers]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"teacher names must be unique, repeated: {sorted(dup)}")
        return teachers

    @model_validator(mode="after")
    def _judge_is_a_teacher(self) -> Config:
        names = [t.name for t in self.teachers]
        if self.filter.math.judge and self.filter.math.judge not in names:
            raise ValueError(f"filter.math.judge: no teacher named '{self.filter.math.judge}' (teachers: {names})")
        if self.filter.code.judge:
            raise ValueError("filter.code.judge: the LLM judge is for math answers; code is judged by its tests")
        return self

    def path(self, p: str) -> Path:
        q = Path(p).expanduser()
        return q if q.is_absolute() else self.base_dir / q

    @property
    def store_path(self) -> Path:
        return self.path(self.workdir) / "factory.duckdb"

    def resolved(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def config_hash(self) -> str:
        """Hash of what shapes the corpus: training, eval, publishing and refresh settings are left out,
        so changing them never makes a new dataset version."""
        data = {k: v for k, v in self.resolved().items() if k not in ("train", "eval", "publish", "refresh")}
        data["build"].pop("progress_interval_s", None)  # how often progress is logged shapes nothing
        blob = json.dumps(data, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def shipped_root() -> Path | None:
    """factory's own project files (prompts/, filters/, data/, factory.yaml): the source checkout,
    or `<prefix>/share/factory` of an installed wheel."""
    import sys

    for root in (Path(__file__).resolve().parent.parent, Path(sys.prefix) / "share" / "factory"):
        if (root / "filters" / "traces.sql").exists() and (root / "factory.yaml").exists():
            return root
    return None


def _field_annotation(parts: list[str]) -> Any:
    """The type annotation of the config field at a `--set` path (None when the path is unknown)."""
    import typing

    node: Any = Config
    for part in parts:
        origin = typing.get_origin(node)
        args = [a for a in typing.get_args(node) if a is not type(None)]
        if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)) and len(args) == 1:
            node, origin, args = args[0], typing.get_origin(args[0]), typing.get_args(args[0])
        if isinstance(node, type) and issubclass(node, BaseModel):
            field = node.model_fields.get(part)
            if field is None:
                return None
            node = field.annotation
        elif origin is list and part.isdigit():
            node = args[0] if args else None
        elif origin is dict:
            node = args[1] if len(args) == 2 else None
        else:
            return None
    return node


def _takes_text_only(annotation: Any) -> bool:
    """A field whose only non-null type is str: its `--set` value is the literal text."""
    import typing

    args = [a for a in typing.get_args(annotation) if a is not type(None)] if typing.get_args(annotation) else [annotation]
    return bool(args) and all(a is str for a in args)


def _parse_value(text: str, parts: list[str] | None = None) -> Any:
    """`--set` values take the type of the field they set: a text field gets the literal text
    (`answer_after=####`, `split=yes`); other fields read it as a YAML scalar (4, 0.5, true, null, [a, b])."""
    if parts is not None and _takes_text_only(_field_annotation(parts)):
        import typing

        optional = type(None) in typing.get_args(_field_annotation(parts))
        return None if optional and text in ("null", "~") else text
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def apply_override(data: dict[str, Any], assignment: str) -> None:
    """Apply `a.b=c` (list items by index: `teachers.0.model=x`) to the raw config dict."""
    if "=" not in assignment:
        raise ConfigError(f"--set {assignment!r}: expected KEY=VALUE, e.g. generation.samples_per_seed=4")
    key, value = assignment.split("=", 1)
    parts = key.strip().split(".")
    node: Any = data
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise ConfigError(f"--set {key}: {'.'.join(parts[:i])} has no item {part}")
            if last:
                node[int(part)] = _parse_value(value, parts)
            else:
                node = node[int(part)]
        else:
            if last:
                node[part] = _parse_value(value, parts)
            else:
                node = node.setdefault(part, {})
                if not isinstance(node, (dict, list)):
                    raise ConfigError(f"--set {key}: {'.'.join(parts[: i + 1])} is not a section")


def _first_error(err: ValidationError, origin: str) -> str:
    e = err.errors()[0]
    loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
    if e["type"] == "extra_forbidden":
        return f"{origin}: unknown key '{loc}'"
    if e["type"] == "missing":
        return f"{origin}: missing required key '{loc}'"
    return f"{origin}: {loc}: {e['msg']} (got {e.get('input')!r})"


def load_config(path: str | Path | None = None, overrides: list[str] = (), data: dict | None = None) -> Config:
    """Load YAML + overrides into a validated Config; raises ConfigError with a one-line message."""
    base = Path(".")
    origin = "config"
    if data is None:
        path = Path(path or "factory.yaml")
        origin = str(path)
        if not path.exists():
            raise ConfigError(f"{path}: no such config file (run `factory init DIR` to scaffold one)")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f" line {mark.line + 1}" if mark else ""
            raise ConfigError(f"{path}:{where} invalid YAML: {getattr(e, 'problem', e)}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping at the top level")
        base = path.resolve().parent
    data = copy.deepcopy(data)  # overrides never touch the caller's dict
    for assignment in overrides:
        apply_override(data, assignment)
    try:
        cfg = Config.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_first_error(e, origin)) from None
    cfg.base_dir = base
    return cfg
