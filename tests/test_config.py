import pytest

from factory.config import (ConfigError, LocalTeacherConfig, OpenAITeacherConfig, VLLMTeacherConfig, load_config,
                            shipped_root, teacher_config)

BASE = {"sources": [{"name": "s", "path": "x.jsonl"}], "teachers": [{"name": "t"}]}


def cfg(overrides=(), **extra):
    return load_config(data={**BASE, **extra}, overrides=list(overrides))


def test_defaults_and_overrides():
    c = cfg(["generation.samples_per_seed=4", "teachers.0.model=foo", "generation.temperature=0", "build.max_failure_rate=0.5"])
    assert c.generation.samples_per_seed == 4 and c.teachers[0].model == "foo"
    assert c.generation.temperature == 0.0 and c.build.max_failure_rate == 0.5
    assert c.teachers[0].backend == "local"


@pytest.mark.parametrize("data,overrides,message", [
    ({"generation": {"bogus": 1}}, [], "unknown key 'generation.bogus'"),
    ({}, ["generation.max_tokens=lots"], "generation.max_tokens: Input should be a valid integer"),
    ({}, ["teachers.0.backend=ollama"], "teachers.0.backend"),
    ({}, ["teachers.3.model=x"], "teachers has no item 3"),
    ({}, ["generation.samples_per_seed"], "expected KEY=VALUE"),
    ({"teachers": [{"name": "a"}, {"name": "a"}]}, [], "teacher names must be unique"),
])
def test_bad_config_is_one_line_naming_the_key(data, overrides, message):
    with pytest.raises(ConfigError) as e:
        cfg(overrides, **data)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_missing_sources_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="missing required key 'sources'"):
        load_config(data={})
    bad = tmp_path / "factory.yaml"
    bad.write_text("sources: [\n  - name: x\n")
    with pytest.raises(ConfigError, match=r"factory.yaml: line \d+ invalid YAML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "nope.yaml")


def test_paths_resolve_against_the_config_folder(tmp_path):
    (tmp_path / "factory.yaml").write_text("sources: [{name: s, path: x.jsonl}]\nworkdir: out\n")
    c = load_config(tmp_path / "factory.yaml")
    assert c.store_path == tmp_path / "out" / "factory.duckdb"


def test_config_hash_changes_with_content_only():
    assert cfg().config_hash() == cfg().config_hash()
    assert cfg().config_hash() != cfg(["generation.max_tokens=9"]).config_hash()


def test_set_gives_a_text_field_the_literal_text():
    c = cfg(["sources.0.answer_after=####", "sources.0.split=yes", "teachers.0.model=0.5", "sources.0.licence=null",
             "generation.max_tokens=64", "filter.require_verified=yes"])
    assert c.sources[0].answer_after == "####"  # YAML would read a comment: null
    assert c.sources[0].split == "yes" and c.teachers[0].model == "0.5"
    assert c.sources[0].licence is None  # null still clears an optional text
    assert c.generation.max_tokens == 64 and c.filter.require_verified is True
    c = cfg(["sources.0.fields.problem=on"])
    assert c.sources[0].fields["problem"] == "on"


# -- teachers: one model per backend -------------------------------------------------------------

@pytest.mark.parametrize("teacher,message", [
    ({"name": "t", "rpm": 5}, "teachers.0.rpm: not a setting of the local backend (it has: name, model, generate, "
                              "batch_size, device; rpm is a setting of openai)"),
    ({"name": "t", "backend": "local", "base_url": "http://x/v1"}, "teachers.0.base_url: not a setting of the local"),
    ({"name": "t", "backend": "vllm", "api_key_env": "K"}, "teachers.0.api_key_env: not a setting of the vllm backend"),
    ({"name": "t", "backend": "vllm", "batch_size": 8}, "teachers.0.batch_size: not a setting of the vllm backend "
                                                        "(it has: name, model, generate, engine_args, chunk_size; "
                                                        "batch_size is a setting of local)"),
    ({"name": "t", "backend": "openai", "engine_args": {}}, "teachers.0.engine_args: not a setting of the openai"),
    ({"name": "t", "backend": "openai", "device": "cuda"}, "device is a setting of local)"),
    ({"name": "t", "backend": "local", "price_in_per_mtok": 1.0}, "price_in_per_mtok is a setting of openai"),
    ({"name": "t", "backend": "openai", "bogus": 1}, "teachers.0.bogus: not a setting of the openai backend (it has: "),
    ({"name": "t", "backend": "ollama"}, "teachers.0.backend: unknown backend 'ollama' (choose local, openai, vllm)"),
    ({"name": "t", "backend": "OpenAI"}, "unknown backend 'OpenAI'"),
    ({"name": "t", "backend": None}, "teachers.0.backend: unknown backend None"),
    ({"name": "t", "backend": ["openai"]}, "teachers.0.backend: unknown backend ['openai']"),
    ({"backend": "openai"}, "missing required key 'teachers.0.name'"),
    ({"name": "t", "backend": "openai", "rpm": 0}, "teachers.0.rpm: Input should be greater than or equal to 1"),
    ({"name": "t", "backend": "vllm", "chunk_size": "big"}, "teachers.0.chunk_size: Input should be a valid integer"),
])
def test_a_setting_of_another_backend_is_one_line_naming_it(teacher, message):
    with pytest.raises(ConfigError) as e:
        cfg(teachers=[{"name": "ok"}, teacher])  # the second teacher: the index is the item's
    text = str(e.value).replace("teachers.1.", "teachers.0.")
    assert message in text and "\n" not in text
    for tag in ("local", "openai", "vllm"):  # never pydantic's union tag in the path
        assert f".{tag}." not in str(e.value)


def test_each_backend_gets_its_own_model_and_local_is_the_default():
    c = cfg(teachers=[{"name": "a"}, {"name": "b", "backend": "openai", "rpm": 10, "base_url": "http://h/v1"},
                      {"name": "c", "backend": "vllm", "engine_args": {"max_model_len": 2048}}])
    assert [type(t) for t in c.teachers] == [LocalTeacherConfig, OpenAITeacherConfig, VLLMTeacherConfig]
    assert c.teachers[1].rpm == 10 and c.teachers[2].engine_args == {"max_model_len": 2048}
    assert list(c.resolved()["teachers"][0]) == ["name", "backend", "model", "generate", "batch_size", "device"]
    assert cfg(teachers=[]).teachers == [] and type(load_config(data={"sources": BASE["sources"]}).teachers[0]) \
        is LocalTeacherConfig
    # a YAML teacher that is not a mapping
    with pytest.raises(ConfigError, match="teachers.0: Input should be a valid dictionary"):
        cfg(teachers=["smollm2"])


def test_teacher_config_builds_the_member_of_its_backend():
    assert isinstance(teacher_config(name="t"), LocalTeacherConfig)
    t = teacher_config(name="t", backend="openai", model="m", base_url="http://h/v1", rpm=3)
    assert isinstance(t, OpenAITeacherConfig) and t.rpm == 3 and t.api_key_env == "OPENAI_API_KEY"
    assert isinstance(teacher_config(name="v", backend="vllm", chunk_size=2), VLLMTeacherConfig)
    with pytest.raises(ConfigError, match=r"^teacher 't': rpm: not a setting of the local backend") as e:
        teacher_config(name="t", rpm=3)
    assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="backend: unknown backend 'tgi'"):
        teacher_config(name="t", backend="tgi")


def test_set_types_a_teacher_value_by_the_field_of_its_backend():
    c = cfg(["teachers.0.base_url=0.5", "teachers.0.api_key_env=null", "teachers.0.model=1e3", "teachers.0.rpm=60",
             "teachers.0.timeout_s=30", "teachers.1.engine_args.max_model_len=2048", "teachers.1.chunk_size=8",
             "teachers.2.device=0", "teachers.2.batch_size=4"],
            teachers=[{"name": "api", "backend": "openai"}, {"name": "v", "backend": "vllm"}, {"name": "l"}])
    api, v, local = c.teachers
    assert api.base_url == "0.5" and api.api_key_env is None and api.model == "1e3"  # text fields keep the text
    assert api.rpm == 60 and api.timeout_s == 30.0
    assert v.engine_args == {"max_model_len": 2048} and v.chunk_size == 8
    assert local.device == "0" and local.batch_size == 4
    # switching a teacher's backend with --set, then setting what that backend reads
    c = cfg(["teachers.0.backend=openai", "teachers.0.base_url=http://127.0.0.1:8000/v1"])
    assert isinstance(c.teachers[0], OpenAITeacherConfig) and c.teachers[0].base_url.endswith("/v1")
    with pytest.raises(ConfigError, match="teachers.0.rpm: not a setting of the local backend"):
        cfg(["teachers.0.rpm=5"])


def test_config_hash_of_configs_written_before_teachers_were_split_is_unchanged():
    # hashes computed with the single flat TeacherConfig (before this change): the same dataset versions
    shipped = load_config(shipped_root() / "factory.yaml")
    assert shipped.config_hash() == "07cb950d54ce1ad1"
    sources = {"sources": [{"name": "s", "path": "x.jsonl"}]}
    assert load_config(data=sources).config_hash() == "4b139f8fda6be63e"
    openai = {"teachers": [{"name": "gpt", "backend": "openai", "model": "gpt-4o-mini",
                            "base_url": "https://api.openai.com/v1", "rpm": 500, "tpm": 200000, "price_in_per_mtok": 0.15,
                            "price_out_per_mtok": 0.6, "extra_body": {"seed": 1}, "use_n": False}]}
    assert load_config(data={**sources, **openai}).config_hash() == "3ed8280e6d2a2539"
    mixed = {"teachers": [{"name": "a", "model": "embedded", "batch_size": 8, "device": "cuda"},
                          {"name": "v", "backend": "vllm", "engine_args": {"max_model_len": 2048}, "chunk_size": 64},
                          {"name": "j", "backend": "openai", "model": "m", "api_key_env": None, "generate": False,
                           "timeout_s": 30, "max_retries": 2, "max_concurrency": 8}],
             "filter": {"math": {"judge": "j"}}}
    assert load_config(data={**sources, **mixed}).config_hash() == "39c68e07758ecb90"
    # eval is not part of the hash, nested or not
    assert load_config(data={**sources, "eval": {"teacher": {"backend": "openai"}}}).config_hash() == "4b139f8fda6be63e"


# -- eval: the build's teacher and sampling settings, nested --------------------------------------

def test_eval_nests_a_teacher_and_the_sampling_settings():
    c = cfg()
    assert isinstance(c.eval.teacher, LocalTeacherConfig) and c.eval.teacher.name == "eval"
    assert c.eval.generation.temperature == 0.0 and c.eval.generation.max_tokens == 512  # greedy by default
    c = cfg(["eval.teacher.backend=openai", "eval.teacher.base_url=8000", "eval.teacher.api_key_env=null",
             "eval.teacher.max_concurrency=4", "eval.generation.temperature=0.8", "eval.generation.top_p=1"])
    t = c.eval.teacher
    assert isinstance(t, OpenAITeacherConfig) and t.base_url == "8000" and t.api_key_env is None
    assert t.max_concurrency == 4 and c.eval.generation.temperature == 0.8 and c.eval.generation.top_p == 1.0
    assert cfg(["eval.generation.max_tokens=64"]).eval.generation.temperature == 0.0  # still greedy
    c = cfg(eval={"teacher": {"backend": "vllm", "engine_args": {"seed": 0}}})
    assert isinstance(c.eval.teacher, VLLMTeacherConfig) and c.eval.teacher.name == "eval"
    # a dumped config (train.yaml is one) loads again: eval's teacher is dumped without what eval refuses
    dumped = c.resolved()
    assert dumped["eval"]["teacher"] == {"backend": "vllm", "engine_args": {"seed": 0}, "chunk_size": 1024}
    again = load_config(data=dumped)
    assert again.eval == c.eval and again.teachers == c.teachers and again.config_hash() == c.config_hash()


@pytest.mark.parametrize("overrides,message", [
    (["eval.temperature=0.8"], "eval.temperature: now eval.generation.temperature"),
    (["eval.backend=openai"], "eval.backend: now eval.teacher.backend"),
    (["eval.base_url=http://h/v1"], "eval.base_url: now eval.teacher.base_url"),
    (["eval.teacher.model=x"], "eval.teacher.model: the model comes from `factory eval -m` (default: train.model)"),
    (["eval.teacher.name=x"], "eval.teacher.name: not a setting of eval's teacher"),
    (["eval.teacher.backend=openai", "eval.teacher.price_in_per_mtok=1"], "eval.teacher.price_in_per_mtok: not a"),
    (["eval.teacher.rpm=5"], "eval.teacher.rpm: not a setting of the local backend (it has: batch_size, device; "
                             "rpm is a setting of openai)"),
    (["eval.teacher.backend=vllm", "eval.teacher.device=cuda"], "eval.teacher.device: not a setting of the vllm"),
    (["eval.teacher.backend=sglang"], "eval.teacher.backend: unknown backend 'sglang'"),
    (["eval.generation.samples_per_seed=2"], "unknown key 'eval.generation.samples_per_seed'"),
    (["eval.generation.top_p=2"], "eval.generation.top_p: Input should be less than or equal to 1"),
])
def test_bad_eval_settings_are_one_line_naming_the_key(overrides, message):
    with pytest.raises(ConfigError) as e:
        cfg(overrides)
    assert message in str(e.value) and "\n" not in str(e.value)
