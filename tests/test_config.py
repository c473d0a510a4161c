import pytest

from factory.config import ConfigError, load_config

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
