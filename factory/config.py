"""Configuration: pydantic v2 models (extra="forbid"), a YAML file plus `--set a.b=c` overrides.

Secrets never live here: a teacher names the environment variable that holds its key
(`api_key_env`), and the key is read from the environment only when the teacher starts.
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import (BaseModel, ConfigDict, Discriminator, Field, Tag, TypeAdapter, ValidationError,
                      field_serializer, field_validator, model_validator)
from pydantic_core import PydanticCustomError

from factory.errors import ConfigError  # noqa: F401 - raised here; importable from this module too


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# keys of a `kind: reasoning_gym` source (factory/gym.py), and of a file source only: each is an error on the other
# (with their defaults: a dumped config that holds them at their defaults loads again)
GYM_SOURCE_KEYS = {"task": None, "tasks": None, "size": None, "seed": 0, "config": {}}
FILE_SOURCE_KEYS = {"path": None, "format": None, "preset": None, "fields": {}, "answer_after": None,
                    "answer_boxed": False, "answer_regex": None, "strip_units": False, "split": "train", "limit": None}


class SourceConfig(Strict):
    name: str
    # file: rows read from `path`; reasoning_gym: problems drawn from reasoning-gym's generators (factory/gym.py)
    kind: Literal["file", "reasoning_gym"] = "file"
    path: str | None = None  # a JSONL / JSON / Parquet / CSV file, or an HF dataset (local folder or Hub name) with format: hf
    format: Literal["jsonl", "json", "parquet", "csv", "hf"] | None = None  # None: from the file extension
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
    template: str | None = None  # default: math_cot.jinja / code_cot.jinja by domain (gym_cot.jinja for reasoning_gym)
    licence: str | None = None
    # kind: reasoning_gym: one task, or a weighted mix of tasks ({name: weight}); `size` problems drawn with
    # generator seed `seed`; `config` is the task's settings (a mix: {task: settings})
    task: str | None = None
    tasks: dict[str, float] | None = None
    size: int | None = Field(default=None, ge=1)
    seed: int = Field(default=0, ge=0)
    config: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _keys_of_its_kind(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        gym = data.get("kind") == "reasoning_gym"
        for key, default in (FILE_SOURCE_KEYS if gym else GYM_SOURCE_KEYS).items():
            if key in data and data[key] != default:
                why = "not a setting of a reasoning_gym source" if gym else \
                    "a setting of kind: reasoning_gym sources (set kind: reasoning_gym)"
                raise PydanticCustomError("not_read", why, {"key": key})
        if not gym and data.get("path") is None:
            raise PydanticCustomError("not_read", "required: the file or dataset to read (or set kind: reasoning_gym)",
                                      {"key": "path"})
        if gym:
            if bool(data.get("task")) == bool(data.get("tasks")):
                raise PydanticCustomError("not_read", "set one of task (a reasoning-gym task name) or tasks "
                                          "({task: weight, ...})", {"key": "task"})
            if data.get("size") is None:
                raise PydanticCustomError("not_read", "required: how many problems to draw", {"key": "size"})
        return data

    @field_validator("tasks")
    @classmethod
    def _positive_weights(cls, tasks: dict[str, float] | None) -> dict[str, float] | None:
        bad = [name for name, weight in (tasks or {}).items() if not weight > 0]
        if bad:
            raise ValueError(f"weights must be positive, got {bad[0]}: {tasks[bad[0]]}")
        return tasks

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


# -- teachers: one model per backend, chosen by `backend` ----------------------------------------
# Each backend's model holds only the settings that backend reads, so a setting meant for another
# one (`rpm` on a local teacher) is an error naming it instead of being ignored.


class TeacherBase(Strict):
    """What every backend has: the build reads name, model and generate of any teacher."""

    name: str
    backend: Literal["local", "openai", "vllm"]
    model: str = "embedded"  # local/vllm: "embedded", a folder or a Hub name; openai: the API's model name
    generate: bool = True  # false: a judge or student only, asked for no traces of its own


class LocalTeacherConfig(TeacherBase):
    """`local`: transformers in-process (teachers/local.py)."""

    backend: Literal["local"] = "local"
    batch_size: int = Field(default=32, ge=1)
    device: str = "cpu"


class OpenAITeacherConfig(TeacherBase):
    """`openai`: any OpenAI-compatible endpoint (teachers/openai.py)."""

    backend: Literal["openai"] = "openai"
    base_url: str | None = None
    api_key_env: str | None = "OPENAI_API_KEY"
    max_concurrency: int = Field(default=64, ge=1)
    rpm: int | None = Field(default=None, ge=1)  # requests per minute
    tpm: int | None = Field(default=None, ge=1)  # tokens per minute (prompt + completion)
    # a whole call may take this long (reasoning traces take minutes); a dead connection is found by
    # idle_timeout_s instead: no byte for that long (streamed) or no answer at all (not streamed)
    timeout_s: float = Field(default=1800.0, gt=0)
    idle_timeout_s: float = Field(default=120.0, gt=0)
    stream: bool = True  # stream answers (SSE), so a slow but live generation is never taken for a dead one
    max_retries: int = Field(default=6, ge=0)
    use_n: bool = True  # ask for all samples of one prompt in one call (n=k) where the server honours it
    reasoning_effort: str | None = None  # sent as `reasoning_effort` (low / medium / high) when set
    extra_body: dict[str, Any] = Field(default_factory=dict)  # merged into every request body (thinking budgets...)
    # cost accounting (USD per million tokens): only this backend reports token costs
    price_in_per_mtok: float | None = None
    price_out_per_mtok: float | None = None
    # mode: batch sends pending requests through the provider's Batch API (teachers/openai_batch.py):
    # files split at the provider's limits, polled with backoff from poll_interval_s up to poll_max_interval_s
    mode: Literal["online", "batch"] = "online"
    batch_max_requests: int = Field(default=50_000, ge=1)  # requests per batch file (OpenAI: 50,000)
    batch_max_bytes: int = Field(default=190_000_000, ge=1024)  # bytes per batch file (OpenAI: 200 MB)
    batch_completion_window: str = "24h"
    poll_interval_s: float = Field(default=30.0, gt=0)
    poll_max_interval_s: float = Field(default=600.0, gt=0)
    # batch prices (USD per million tokens); unset: the online price times batch_discount
    price_in_per_mtok_batch: float | None = None
    price_out_per_mtok_batch: float | None = None
    batch_discount: float = Field(default=0.5, gt=0, le=1)


class VLLMTeacherConfig(TeacherBase):
    """`vllm`: the offline vllm.LLM engine (teachers/vllm.py)."""

    backend: Literal["vllm"] = "vllm"
    engine_args: dict[str, Any] = Field(default_factory=dict)  # vllm.LLM(**engine_args)
    chunk_size: int = Field(default=1024, ge=1)  # requests per generate() call


TEACHER_BACKENDS: dict[str, type[TeacherBase]] = {
    "local": LocalTeacherConfig, "openai": OpenAITeacherConfig, "vllm": VLLMTeacherConfig}


def _backend_of(value: Any) -> str:
    """The union member a teacher validates as: its `backend`, "local" when absent."""
    backend = value.get("backend", "local") if isinstance(value, dict) else getattr(value, "backend", "local")
    return backend if isinstance(backend, str) else repr(backend)  # a non-text backend is an unknown one


TeacherConfig = Annotated[
    Union[Annotated[LocalTeacherConfig, Tag("local")], Annotated[OpenAITeacherConfig, Tag("openai")],
          Annotated[VLLMTeacherConfig, Tag("vllm")]],
    Discriminator(_backend_of, custom_error_type="unknown_backend", custom_error_message="unknown backend"),
]

# config_hash hashes each teacher with every key of the single flat model that teachers had before
# they were split by backend (at its defaults where this backend has no such key): a config written
# then keeps its hash, and so its dataset version. Frozen on purpose: never add to it.
FLAT_TEACHER_DEFAULTS: dict[str, Any] = {
    "base_url": None, "api_key_env": "OPENAI_API_KEY", "max_concurrency": 64, "rpm": None, "tpm": None,
    "timeout_s": 120.0, "max_retries": 6, "use_n": True, "extra_body": {}, "batch_size": 32, "device": "cpu",
    "engine_args": {}, "chunk_size": 1024, "price_in_per_mtok": None, "price_out_per_mtok": None}


# how long a call may wait, and whether it streams, shape no corpus
_UNHASHED_TEACHER_KEYS = frozenset({"idle_timeout_s", "stream"}) | {
    # batch or online, and at what price, changes what a run costs, not what it asks
    "mode", "batch_max_requests", "batch_max_bytes", "batch_completion_window", "poll_interval_s",
    "poll_max_interval_s", "price_in_per_mtok_batch", "price_out_per_mtok_batch", "batch_discount"}


def _hashed_teacher(t: dict[str, Any]) -> dict[str, Any]:
    """A teacher's keys as config_hash sees them. Keys at their default are left out (FLAT_TEACHER_DEFAULTS
    fills the old ones back in): adding a key, or raising a default (timeout_s), never changes the hash of a
    config that does not set it."""
    fields = TEACHER_BACKENDS[t["backend"]].model_fields if t.get("backend") in TEACHER_BACKENDS else {}
    return {k: v for k, v in t.items()
            if k not in _UNHASHED_TEACHER_KEYS
            and (k in TeacherBase.model_fields or k not in fields or fields[k].get_default(call_default_factory=True) != v)}


def teacher_config(**fields: Any) -> TeacherConfig:
    """A validated teacher config from keyword settings (the member is chosen by `backend`, default
    local); raises ConfigError with one line naming the bad setting."""
    try:
        return _TEACHER_ADAPTER.validate_python(fields)
    except ValidationError as e:
        raise ConfigError(_first_error(e, f"teacher {fields.get('name', '?')!r}")) from None


_TEACHER_ADAPTER: TypeAdapter = TypeAdapter(TeacherConfig)


class SamplingConfig(Strict):
    """Sampling settings, shared by the build (`generation:`) and eval (`eval.generation:`)."""

    temperature: float = Field(default=0.7, ge=0)
    top_p: float = Field(default=0.95, gt=0, le=1)
    max_tokens: int = Field(default=512, ge=1)


class GenerationConfig(SamplingConfig):
    samples_per_seed: int = Field(default=2, ge=1)
    logprobs: int = Field(default=0, ge=0, le=20)  # keep the top-k logprobs per token (0: off)

    def params(self) -> dict[str, Any]:
        """Sampling params as they enter the request hash (samples_per_seed does not)."""
        return self.model_dump(exclude={"samples_per_seed"})


class RayConfig(Strict):
    """Where and how `build.executor: ray` runs (factory/distributed.py); shapes no output."""

    address: str | None = None  # a running cluster; else $RAY_ADDRESS; else a local one is started
    replicas: int = Field(default=2, ge=1)  # teacher replicas (Ray actors), each loads the model once
    cpus_per_replica: float = Field(default=1.0, gt=0)
    gpus_per_replica: float = Field(default=0.0, ge=0)  # vllm: tensor x pipeline parallel size
    shard_size: int = Field(default=64, ge=1)  # requests per task sent to a replica
    check_batch: int = Field(default=256, ge=1)  # items per Ray task of the filter's checks
    # a vllm teacher runs through Ray Data's LLM processor (ray_llm.py: one engine per replica, tensor/
    # pipeline parallel from engine_args); false: one vllm teacher per Ray actor (distributed.RayTeacher)
    vllm_data: bool = True


class BuildConfig(Strict):
    max_failure_rate: float = Field(default=0.05, ge=0, le=1)  # exit non-zero above this
    progress_interval_s: float = Field(default=30.0, gt=0)  # off a terminal: one progress line this often
    # where teachers and the filter's CPU-heavy checks run: this process, or a Ray cluster
    executor: Literal["local", "ray"] = "local"
    ray: RayConfig = Field(default_factory=RayConfig)


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
    # input/output test cases (APPS, CodeContests, LiveCodeBench...) run per trace: the first N, public ones first
    max_cases: int = Field(default=32, ge=1)


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
    # reasoning_gym seeds: a trace is verified when the task's own score_answer gives at least this (0..1)
    gym_min_score: float = Field(default=1.0, ge=0, le=1)
    prefer: Literal["shortest", "diverse"] = "shortest"  # after verified-first


class StudentConfig(Strict):
    """`select.student`: the student answers each seed `samples` times; a seed is kept only if its pass rate
    (verified answers / answered samples) lies in `pass_rate` [lo, hi], bounds included (factory/student.py).
    Unset sampling settings are the build's (`generation:`)."""

    teacher: str  # a teacher entry (any backend) that serves the student, with generate: false
    samples: int = Field(default=4, ge=1)  # k answers per seed
    pass_rate: tuple[float, float]  # [lo, hi]: below lo a seed is too hard for the student, above hi too easy
    template: str | None = None  # default: the seed's own template (as the teachers saw it)
    temperature: float | None = Field(default=None, ge=0)
    top_p: float | None = Field(default=None, gt=0, le=1)
    max_tokens: int | None = Field(default=None, ge=1)
    # true: the band is decided after the plan and before any teacher generates, so out-of-band seeds cost no
    # teacher calls; false: the teachers answer every seed (a later band change then needs no new teacher
    # calls). Not hashed: the kept set is the same either way.
    before_generation: bool = True

    @field_validator("pass_rate")
    @classmethod
    def _a_band(cls, band: tuple[float, float]) -> tuple[float, float]:
        lo, hi = band
        if not 0 <= lo <= hi <= 1:
            raise ValueError(f"expected [lo, hi] with 0 <= lo <= hi <= 1, got [{lo:g}, {hi:g}]")
        return band


class SelectConfig(Strict):
    """Which seeds are worth distilling (decided in the filter stage); nothing is selected by default."""

    student: StudentConfig | None = None


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


# eval's teacher gets its model from `factory eval -m` and its name from eval; it writes no traces and
# reports no cost, so these settings are not read there
EVAL_TEACHER_UNREAD = ("name", "model", "generate", "price_in_per_mtok", "price_out_per_mtok")
# keys eval had before it nested `teacher` and `generation`: named in the error, with their new place
EVAL_MOVED_KEYS = {**{k: f"generation.{k}" for k in ("temperature", "top_p", "max_tokens")},
                   **{k: f"teacher.{k}" for k in ("backend", "base_url", "api_key_env", "batch_size",
                                                  "max_concurrency", "device")}}


class EvalSamplingConfig(SamplingConfig):
    """The build's sampling settings, greedy unless set: eval scores the model's most likely answer."""

    temperature: float = Field(default=0.0, ge=0)


class EvalConfig(Strict):
    """`factory eval`: pass@1 / pass@k on a benchmark set with the filter stage's verifiers."""

    benchmark: Literal["gsm8k_test", "math500", "humaneval"] = "gsm8k_test"
    path: str | None = None  # default: filter.benchmarks[benchmark]
    limit: int | None = Field(default=50, ge=1)
    samples: int = Field(default=1, ge=1)  # k in pass@k (pass@1 is averaged over the k samples)
    # the build's sampling settings; temperature 0 is greedy (then samples should be 1)
    generation: EvalSamplingConfig = Field(default_factory=EvalSamplingConfig)
    template: str | None = None  # default: math_cot.jinja / code_cot.jinja by domain
    # a teacher as in `teachers:` (any backend) without name and model: the model is `factory eval -m`
    teacher: TeacherConfig = Field(default_factory=lambda: LocalTeacherConfig(name="eval"))
    output_dir: str = "eval"  # relative to workdir

    @model_validator(mode="before")
    @classmethod
    def _moved_keys(cls, data: Any) -> Any:
        for key in data if isinstance(data, dict) else ():
            if key in EVAL_MOVED_KEYS:
                raise PydanticCustomError("moved_key", "now eval.{new}", {"key": key, "new": EVAL_MOVED_KEYS[key]})
        return data

    @field_validator("teacher", mode="before")
    @classmethod
    def _eval_teacher(cls, teacher: Any) -> Any:
        if not isinstance(teacher, dict):
            return teacher
        for key in EVAL_TEACHER_UNREAD:
            if key in teacher:
                why = "the model comes from `factory eval -m` (default: train.model)" if key == "model" else \
                    "not a setting of eval's teacher"
                raise PydanticCustomError("not_read", why, {"key": key})
        return {**teacher, "name": "eval"}

    @field_serializer("teacher")
    def _dump_teacher(self, teacher: TeacherBase, info: Any) -> dict[str, Any]:
        # without the settings eval refuses, so a dumped config (train.yaml) loads again
        return {k: v for k, v in teacher.model_dump(mode=info.mode).items() if k not in EVAL_TEACHER_UNREAD}


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
    # draw this many problems nobody has seen from each reasoning_gym source on every refresh (factory/gym.py)
    fresh_seeds: int = Field(default=0, ge=0)
    gates: GatesConfig = Field(default_factory=GatesConfig)


class Config(Strict):
    workdir: str = ".factory"  # relative to the config file's folder
    prompts_dir: str = "prompts"
    sources: list[SourceConfig]
    teachers: list[TeacherConfig] = Field(default_factory=lambda: [LocalTeacherConfig(name="smollm2")])
    generation: GenerationConfig = Field(default_factory=GenerationConfig)
    build: BuildConfig = Field(default_factory=BuildConfig)
    filter: FilterConfig = Field(default_factory=FilterConfig)
    select: SelectConfig = Field(default_factory=SelectConfig)
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

    @model_validator(mode="after")
    def _student_is_a_teacher(self) -> Config:
        student = self.select.student
        if student is None:
            return self
        names = [t.name for t in self.teachers]
        tcfg = next((t for t in self.teachers if t.name == student.teacher), None)
        if tcfg is None:
            raise ValueError(f"select.student.teacher: no teacher named '{student.teacher}' (teachers: {names})")
        if tcfg.generate:  # its answers would be traces of the corpus
            raise ValueError(f"select.student.teacher: teacher '{student.teacher}' must have generate: false "
                             "(the student's answers never enter the corpus; add a second entry for the same "
                             "model to use it as a teacher too)")
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
        data["teachers"] = [FLAT_TEACHER_DEFAULTS | _hashed_teacher(t) for t in data["teachers"]]  # see FLAT_TEACHER_DEFAULTS
        data["build"].pop("progress_interval_s", None)  # how often progress is logged shapes nothing
        for source in data["sources"]:  # keys added with reasoning_gym sources: left out at their defaults
            for key, default in {"kind": "file", **GYM_SOURCE_KEYS}.items():
                if source.get(key, default) == default:
                    source.pop(key, None)
        if data["filter"].get("gym_min_score") == 1.0:
            data["filter"].pop("gym_min_score")
        if data["filter"]["code"].get("max_cases") == CodeQualityConfig().max_cases:  # added later: hashed when set
            data["filter"]["code"].pop("max_cases")
        for where in ("executor", "ray"):  # where the work runs shapes nothing either (same rows)
            data["build"].pop(where, None)
        if data.get("select") == SelectConfig().model_dump(mode="json"):  # no selection: hashes as before it existed
            data.pop("select")
        elif data["select"].get("student"):  # when the band is decided changes no kept seed
            data["select"]["student"].pop("before_generation", None)
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


def project_file(cfg: Config, path: str) -> Path:
    """A file the config names (a benchmark set): relative to the project, else the copy that ships with factory."""
    p = cfg.path(path)
    if not p.exists() and shipped_root() and (shipped_root() / path).exists():
        p = shipped_root() / path
    return p


def _unwrap(node: Any) -> Any:
    """A type without its Annotated metadata and without `| None` (when one type is left)."""
    import types
    import typing

    while True:
        origin, args = typing.get_origin(node), typing.get_args(node)
        if origin is typing.Annotated:
            node = args[0]
        elif origin in (typing.Union, types.UnionType) and len([a for a in args if a is not type(None)]) == 1:
            node = next(a for a in args if a is not type(None))
        else:
            return node


def _is_model(node: Any) -> bool:
    return isinstance(node, type) and issubclass(node, BaseModel)


def _field_annotation(parts: list[str]) -> Any:
    """The type annotation of the config field at a `--set` path (None when the path is unknown).
    Through a union of models (a teacher of any backend) the field is the one of a member that has it:
    a name means the same type in every member that has it."""
    import types
    import typing

    node: Any = Config
    for part in parts:
        node = _unwrap(node)
        origin, args = typing.get_origin(node), typing.get_args(node)
        if _is_model(node):
            field = node.model_fields.get(part)
            if field is None:
                return None
            node = field.annotation
        elif origin in (typing.Union, types.UnionType):
            members = [m for m in map(_unwrap, args) if _is_model(m) and part in m.model_fields]
            if not members:
                return None
            node = members[0].model_fields[part].annotation
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


def _teacher_tag_at(loc: tuple) -> int | None:
    """Where pydantic put the backend tag in a teacher's error path (teachers.0.local.rpm), if it did."""
    for i, part in enumerate(loc):
        under_teacher = i == 0 or loc[i - 1] == "teacher" or (i >= 2 and isinstance(loc[i - 1], int)
                                                               and loc[i - 2] == "teachers")
        if isinstance(part, str) and part in TEACHER_BACKENDS and under_teacher:
            return i
    return None


def _not_a_setting(backend: str, key: Any, in_eval: bool) -> str:
    """Why a teacher key is refused: the backend's own settings, and which backends have this one."""
    has = [f for f in TEACHER_BACKENDS[backend].model_fields
           if f != "backend" and not (in_eval and f in EVAL_TEACHER_UNREAD)]
    owners = [b for b, model in TEACHER_BACKENDS.items() if key in model.model_fields]
    where = f"; {key} is a setting of {' and '.join(owners)}" if owners else ""
    return f"not a setting of the {backend} backend (it has: {', '.join(has)}{where})"


def _first_error(err: ValidationError, origin: str) -> str:
    e = err.errors()[0]
    raw = tuple(e["loc"])
    tag = _teacher_tag_at(raw)
    parts = raw if tag is None else raw[:tag] + raw[tag + 1:]  # the path as the user wrote it
    loc = ".".join(str(p) for p in parts) or "(top level)"
    ctx = e.get("ctx") or {}

    def at(key: Any) -> str:
        return ".".join(str(p) for p in parts + (key,))

    if e["type"] == "extra_forbidden":
        if tag is not None:
            return f"{origin}: {loc}: {_not_a_setting(raw[tag], parts[-1], tag > 0 and raw[tag - 1] == 'teacher')}"
        return f"{origin}: unknown key '{loc}'"
    if e["type"] == "unknown_backend":
        got = e["input"].get("backend") if isinstance(e["input"], dict) else e["input"]
        return f"{origin}: {at('backend')}: unknown backend {got!r} (choose {', '.join(TEACHER_BACKENDS)})"
    if e["type"] in ("moved_key", "not_read"):
        return f"{origin}: {at(ctx['key'])}: {e['msg']}"
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
