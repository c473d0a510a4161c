import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from factory.config import SourceConfig
from factory.records import Seed
from factory.sources import BadRow, SourceError, plan_source, read_seeds

DATA = Path(__file__).resolve().parent.parent / "data"


def load(**kw):
    items = list(read_seeds(plan_source(SourceConfig(name="s", **kw))))
    return [i for i in items if isinstance(i, Seed)], [i for i in items if isinstance(i, BadRow)]


def test_gsm8k_preset_extracts_the_answer_after_hashes():
    seeds, bad = load(path=str(DATA / "gsm8k_train_sample.jsonl"), preset="gsm8k", limit=5)
    assert len(seeds) == 5 and not bad
    assert seeds[0].answer == "72" and seeds[0].problem.startswith("Natalia") and seeds[0].domain == "math"
    assert seeds[0].meta["row"] == 1


def test_math500_and_humaneval_presets():
    seeds, _ = load(path=str(DATA / "benchmarks" / "math500_test.jsonl"), preset="math500", limit=3)
    assert seeds[0].answer == "\\left( 3, \\frac{\\pi}{2} \\right)" and seeds[0].meta["id"].startswith("test/")
    seeds, bad = load(path=str(DATA / "benchmarks" / "humaneval.jsonl.gz"), preset="humaneval")
    assert len(seeds) == 164 and not bad
    assert seeds[0].domain == "code" and seeds[0].entry_point and "def check" in seeds[0].tests


def test_bad_rows_name_file_row_and_field(tmp_path):
    lines = [b'{"question": "ok?", "answer": "so #### 4"}', b'{"answer": "#### 4"}', b'\xff\xfe',
             b'{"question": 5, "answer": "#### 1"}', b'{"question": "", "answer": "#### 1"}', b"[1]",
             b'{"question": "q", "answer": "no marker"}', b"{oops", b"", b'{"question": "fine", "answer": "#### 1,000"}']
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b"\n".join(lines))
    seeds, bad = load(path=str(path), preset="gsm8k")
    assert [s.answer for s in seeds] == ["4", "1000"]
    got = {b.row: str(b) for b in bad}
    assert got[2] == "mixed.jsonl:2 field 'question': missing field"
    assert got[3].startswith("mixed.jsonl:3: invalid UTF-8")
    assert got[4] == "mixed.jsonl:4 field 'question': expected a string, got int"
    assert got[5] == "mixed.jsonl:5 field 'question': empty problem"
    assert got[6] == "mixed.jsonl:6: expected an object, got list"
    assert got[7] == "mixed.jsonl:7 field 'answer': no answer after '####'"
    assert got[8].startswith("mixed.jsonl:8: invalid JSON")


def test_parquet_and_custom_mapping(tmp_path):
    table = pa.table({"q": ["What is 2+2?", None, "3*3?"], "a": [4, 1, 9]})
    pq.write_table(table, tmp_path / "x.parquet")
    seeds, bad = load(path=str(tmp_path / "x.parquet"), fields={"problem": "q", "answer": "a"})
    assert [(s.problem, s.answer) for s in seeds] == [("What is 2+2?", "4"), ("3*3?", "9")]
    assert str(bad[0]) == "x.parquet:2 field 'q': is null"


def test_hf_datasets_from_a_local_folder(tmp_path):
    import datasets

    ds = datasets.Dataset.from_list([{"question": "1+1?", "answer": "#### 2"}, {"question": "2+2?", "answer": "#### 4"}])
    ds.save_to_disk(str(tmp_path / "saved"))
    seeds, _ = load(path=str(tmp_path / "saved"), format="hf", preset="gsm8k")
    assert [s.answer for s in seeds] == ["2", "4"]
    # a folder of data files goes through load_dataset (the same call that takes a Hub name)
    (tmp_path / "files").mkdir()
    with open(tmp_path / "files" / "train.jsonl", "w") as f:
        f.write(json.dumps({"question": "3+3?", "answer": "#### 6"}) + "\n")
    seeds, _ = load(path=str(tmp_path / "files"), format="hf", preset="gsm8k")
    assert [s.answer for s in seeds] == ["6"]


def test_source_errors_are_one_line(tmp_path):
    with pytest.raises(SourceError, match="no such file"):
        plan_source(SourceConfig(name="s", path=str(tmp_path / "missing.jsonl"), preset="gsm8k"))
    with pytest.raises(SourceError, match="map the 'problem' field"):
        plan_source(SourceConfig(name="s", path=str(DATA / "gsm8k_train_sample.jsonl")))
    with pytest.raises(SourceError, match="unknown field mapping"):
        plan_source(SourceConfig(name="s", path=str(DATA / "gsm8k_train_sample.jsonl"), fields={"problme": "q"}))


def test_seed_ids_are_content_hashes():
    a = Seed("src", "What is 1+1?", answer="2")
    assert a.seed_id == Seed("src", "What is 1+1?", answer="3", meta={"row": 9}).seed_id
    assert a.seed_id != Seed("other", "What is 1+1?").seed_id
