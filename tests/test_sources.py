import gzip
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


# -- describing real datasets with config alone ------------------------------------------------

def write_json(path: Path, doc) -> Path:
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


SVAMP = [{"Body": "Jack had 8 pens and Mary had 5 pens.", "Question": "How many pens in all?", "Answer": 13.0,
          "Question Text": "Q1", "ID": "chal-1"},
         {"Body": "A tree had 4.5 m.", "Question": "It grew 0.5 m. How tall?", "Answer": 5.0,
          "Question Text": "Q2", "ID": "chal-2"},
         {"Body": "Bo had 9 apples.", "Question": "He ate 1.5.", "Answer": 7.5, "Question Text": None, "ID": "chal-3"}]


def test_field_expressions_join_columns_and_read_any_column_name(tmp_path):
    path = write_json(tmp_path / "svamp.json", SVAMP)
    seeds, bad = load(path=str(path), fields={"problem": "{{ Body }} {{ Question }}", "answer": "Answer", "id": "ID"})
    assert [(s.problem, s.answer) for s in seeds] == [
        ("Jack had 8 pens and Mary had 5 pens. How many pens in all?", "13"),  # 13.0 is the integer 13
        ("A tree had 4.5 m. It grew 0.5 m. How tall?", "5"), ("Bo had 9 apples. He ate 1.5.", "7.5")]
    assert not bad and seeds[0].meta["id"] == "chal-1"
    # a column name with a space, through `row`; a null cell renders as nothing, so row 3's problem is empty
    seeds, bad = load(path=str(path), fields={"problem": '{{ row["Question Text"] }}', "answer": "{{ Answer }}"})
    assert [(s.problem, s.answer) for s in seeds] == [("Q1", "13"), ("Q2", "5")]
    assert [str(b) for b in bad] == ["svamp.json:3 field 'problem': empty problem"]
    # control flow and filters work; the seed id is hash(source, problem) whatever built the problem
    seeds, _ = load(path=str(path), fields={"problem": "{% if Body %}{{ Body | upper }}{% endif %}"})
    assert seeds[0].problem == SVAMP[0]["Body"].upper()
    assert seeds[0].seed_id == Seed("s", SVAMP[0]["Body"].upper()).seed_id


def test_a_column_missing_only_in_later_rows_is_a_bad_row(tmp_path):
    rows = [{"Body": "b1", "Question": "q1", "Answer": 1}, {"Body": "b2", "Answer": 2},
            {"Body": "b3", "Question": "q3", "Answer": 3}]
    path = tmp_path / "rows.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    seeds, bad = load(path=str(path), fields={"problem": "{{ Body }} {{ Question }}", "answer": "Answer"})
    assert [s.problem for s in seeds] == ["b1 q1", "b3 q3"]
    assert [str(b) for b in bad] == ["rows.jsonl:2 field 'Question': missing field"]


@pytest.mark.parametrize("fields,message", [
    ({"problem": "Qestion", "answer": "Answer"},
     r"^source 's': fields.problem: no column 'Qestion' in \S*data.\w+ \(columns: Body, Question, Answer\)$"),
    ({"problem": "Question", "answer": "answer"}, r"fields.answer: no column 'answer' in \S*data"),
    ({"problem": "{{ Body }} {{ Qestion }}"}, r"fields.problem: '\{\{ Body \}\} \{\{ Qestion \}\}' reads column "
                                             r"'Qestion', which \S*data.\w+ does not have \(columns: Body, Question"),
    ({"problem": '{{ row["Question Text"] }}'}, r"reads column 'Question Text'"),
    ({"problem": "{{ row.Qestion }}"}, r"reads column 'Qestion'"),
    ({"problem": "Question", "id": "uid"}, r"fields.id: no column 'uid'"),  # a mapped id is checked too
])
@pytest.mark.parametrize("fmt", ["jsonl", "json", "parquet", "hf"])
def test_a_mapped_column_the_data_lacks_stops_before_any_row(tmp_path, fields, message, fmt):
    rows = [{"Body": "b", "Question": "q", "Answer": "1"}] * 3
    if fmt == "jsonl":
        path = tmp_path / "data.jsonl"
        path.write_text("\n".join(json.dumps(r) for r in rows))
    elif fmt == "json":
        path = write_json(tmp_path / "data.json", {"data": rows})
    elif fmt == "parquet":
        path = tmp_path / "data.parquet"
        pq.write_table(pa.Table.from_pylist(rows), path)
    else:
        import datasets

        path = tmp_path / "data.hf"
        datasets.Dataset.from_list(rows).save_to_disk(str(path))
    items = read_seeds(plan_source(SourceConfig(name="s", path=str(path), fields=fields,
                                                format="hf" if fmt == "hf" else None)))
    with pytest.raises(SourceError, match=message) as err:
        next(items)
    assert "\n" not in str(err.value)


def test_a_preset_on_a_file_of_another_schema_is_one_error(tmp_path):
    pq.write_table(pa.table({"prompt": ["2+2?"], "completion": ["4"]}), tmp_path / "other.parquet")
    with pytest.raises(SourceError, match=r"fields.problem: no column 'question' in other.parquet "
                                          r"\(columns: prompt, completion\)"):
        load(path=str(tmp_path / "other.parquet"), preset="gsm8k")
    wide = {f"c{i}": [1] for i in range(30)}
    pq.write_table(pa.table(wide), tmp_path / "wide.parquet")
    with pytest.raises(SourceError, match=r"columns: c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, \.\.\. \(30 in all\)"):
        load(path=str(tmp_path / "wide.parquet"), fields={"problem": "q"})
    # a preset's id column may be missing (ids are optional); math500-shaped files without unique_id load
    rows = [{"problem": "1+1?", "answer": "2"}]
    seeds, _ = load(path=str(write_json(tmp_path / "m.json", rows)), preset="math500")
    assert seeds[0].answer == "2" and "id" not in seeds[0].meta


@pytest.mark.parametrize("expression", ["{{ Body }", "{% if Body %}x", "{{ Body | }}", "{{ }}"])
def test_a_jinja_syntax_error_in_a_field_is_one_line(expression):
    with pytest.raises(SourceError, match=r"^source 's': fields.problem: jinja syntax error in ") as err:
        plan_source(SourceConfig(name="s", path=str(DATA / "gsm8k_train_sample.jsonl"), fields={"problem": expression}))
    assert "\n" not in str(err.value)


def test_json_files_array_object_of_rows_or_json_lines(tmp_path):
    rows = [{"q": "1+1?", "a": "2"}, {"q": "2+2?", "a": "4"}]
    for doc in (rows, {"data": rows}, {"version": "1.0", "data": rows, "tags": ["x"]}):
        seeds, bad = load(path=str(write_json(tmp_path / "d.json", doc)), fields={"problem": "q", "answer": "a"})
        assert [(s.answer, s.meta["row"]) for s in seeds] == [("2", 1), ("4", 2)] and not bad
    (tmp_path / "lines.json").write_text("\n".join(json.dumps(r) for r in rows) + "\n")  # JSON Lines named .json
    seeds, _ = load(path=str(tmp_path / "lines.json"), fields={"problem": "q", "answer": "a"})
    assert [s.answer for s in seeds] == ["2", "4"]
    with gzip.open(tmp_path / "d.json.gz", "wt") as f:
        json.dump(rows, f)
    seeds, _ = load(path=str(tmp_path / "d.json.gz"), fields={"problem": "q"})
    assert len(seeds) == 2
    # rows that are not objects are bad rows, the rest loads
    seeds, bad = load(path=str(write_json(tmp_path / "m.json", [rows[0], 5, None])), fields={"problem": "q"})
    assert len(seeds) == 1 and [str(b) for b in bad] == ["m.json:2: expected an object, got int",
                                                        "m.json:3: expected an object, got NoneType"]


@pytest.mark.parametrize("text,message", [
    ("42", r"expected an array of rows or an object holding one list of rows, got a JSON int"),
    ('"rows"', r"got a JSON str"),
    ('{"question": "1+1?", "answer": "2"}', r"the top-level object has keys: question, answer"),
    ('{"train": [{"q": 1}], "test": [{"q": 2}]}', r"keys: train, test"),
    ('[{"q": "1?"}, ', r"invalid JSON at line 1 column"),
])
def test_json_files_of_another_shape_are_one_error(tmp_path, text, message):
    (tmp_path / "bad.json").write_text(text)
    with pytest.raises(SourceError, match=r"^source 's': bad.json: .*" + message):
        load(path=str(tmp_path / "bad.json"), fields={"problem": "q"})


def test_empty_files_yield_nothing(tmp_path):
    for name in ("e.jsonl", "e.json"):
        (tmp_path / name).write_text("\n  \n" if name.endswith("l") else "")
        assert load(path=str(tmp_path / name), fields={"problem": "q"}) == ([], [])


SOLUTIONS = [
    ("The area is $\\boxed{1.6 \\mathrm{~cm}}$.", "1.6 \\mathrm{~cm}"),
    ("First \\boxed{3}, but wait, it is \\boxed{\\frac{1}{2}}.", "\\frac{1}{2}"),  # the LAST box
    ("So $x = \\boxed{\\dfrac{\\sqrt{3}}{2}}$", "\\dfrac{\\sqrt{3}}{2}"),  # nested braces
    ("Put it in \\boxed{} as asked: \\boxed{(1, 2)}", "(1, 2)"),
    ("\\fbox{12} and then $\\boxed{}$", "12"),  # an empty last box is skipped
]


def test_answer_boxed_takes_the_last_box_of_a_worked_solution(tmp_path):
    rows = [{"problem": f"p{i}", "solution": s} for i, (s, _) in enumerate(SOLUTIONS)]
    rows.append({"problem": "no box", "solution": "The answer is 5."})
    path = write_json(tmp_path / "math.json", rows)
    seeds, bad = load(path=str(path), fields={"problem": "problem", "answer": "solution"}, answer_boxed=True)
    assert [s.answer for s in seeds] == [want for _, want in SOLUTIONS]
    assert [str(b) for b in bad] == ["math.json:6 field 'solution': no non-empty \\boxed{} in the answer"]


def test_answer_regex_takes_the_last_match(tmp_path):
    rows = [{"q": "a", "r": "Answer: 3. Corrected answer: 4"}, {"q": "b", "r": "answer: -7.5 units"},
            {"q": "c", "r": "no marker here"}]
    path = write_json(tmp_path / "r.json", rows)
    seeds, bad = load(path=str(path), fields={"problem": "q", "answer": "r"}, answer_regex=r"(?i)answer:\s*(-?[\d.]+)")
    assert [s.answer for s in seeds] == ["4", "-7.5"]
    assert str(bad[0]) == "r.json:3 field 'r': answer_regex '(?i)answer:\\\\s*(-?[\\\\d.]+)' does not match"
    seeds, _ = load(path=str(path), fields={"problem": "q", "answer": "r"}, answer_regex=r"-?\d+(?:\.\d+)?")
    assert [s.answer for s in seeds] == ["4", "-7.5"]  # no group: the whole match


def test_strip_units_leaves_the_value(tmp_path):
    from factory.checks import math as math_checks

    if not hasattr(math_checks, "strip_units"):
        pytest.skip("factory.checks.math.strip_units not there yet")
    rows = [{"q": "a", "a": "9 (apples)"}, {"q": "b", "a": "$1,200"}, {"q": "c", "a": "\\frac{3}{4}"}]
    seeds, _ = load(path=str(write_json(tmp_path / "u.json", rows)), fields={"problem": "q", "answer": "a"},
                    strip_units=True)
    assert [s.answer for s in seeds] == ["9", "1200", "\\frac{3}{4}"]
    rows = [{"q": "a", "s": "so she has $\\boxed{12 \\text{ cm}}$"}]
    seeds, _ = load(path=str(write_json(tmp_path / "b.json", rows)), fields={"problem": "q", "answer": "s"},
                    answer_boxed=True, strip_units=True)
    assert seeds[0].answer == "12"


def test_extraction_keys_are_validated_and_replace_a_presets(tmp_path):
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="choose one of answer_after / answer_boxed"):
        SourceConfig(name="s", path="x.jsonl", answer_after="####", answer_boxed=True)
    with pytest.raises(ValidationError, match="not a regular expression"):
        SourceConfig(name="s", path="x.jsonl", answer_regex="(unclosed")
    rows = [{"question": "q", "answer": "work \\boxed{72} #### 70"}]
    seeds, _ = load(path=str(write_json(tmp_path / "g.json", rows)), preset="gsm8k", answer_boxed=True)
    assert seeds[0].answer == "72"  # answer_boxed replaces the preset's '####'


def test_the_whole_row_is_kept_json_safe_in_meta(tmp_path):
    import datetime

    table = pa.table({"q": ["1+1?"], "img": [b"\x89PNG" * 100], "when": [datetime.date(2024, 1, 2)],
                      "score": [float("nan")], "tags": [["a", "b"]]})
    pq.write_table(table, tmp_path / "x.parquet")
    seeds, _ = load(path=str(tmp_path / "x.parquet"), fields={"problem": "q"})
    row = seeds[0].meta["source_row"]
    assert row == {"q": "1+1?", "img": "<400 bytes>", "when": "2024-01-02", "score": None, "tags": ["a", "b"]}
    json.dumps(seeds[0].meta, allow_nan=False)
    assert seeds[0].meta["row"] == 1


def test_seed_ids_of_shipped_presets_do_not_change():
    seeds, _ = load(path=str(DATA / "gsm8k_train_sample.jsonl"), preset="gsm8k", limit=1)
    assert seeds[0].seed_id == Seed("s", seeds[0].problem).seed_id == "7640845e9b182fd049b8566fa339dbed"


def test_csv_and_tsv_files_are_sources(tmp_path):
    (tmp_path / "mawps.csv").write_text('Question,Answer\n"Tom has 3 apples, then 4 more. How many?",7.0\n'
                                        '"Too, many, cells",1,2\n"No answer here",\n')
    (tmp_path / "mawps.tsv").write_text("Question\tAnswer\nHow many legs do 2 cats have?\t8\n")
    got = list(read_seeds(plan_source(SourceConfig(name="m", path=str(tmp_path / "mawps.csv"),
                                                   fields={"problem": "Question", "answer": "Answer"}))))
    seeds = [g for g in got if isinstance(g, Seed)]
    assert [(s.problem, s.answer) for s in seeds] == [("Tom has 3 apples, then 4 more. How many?", "7.0"),
                                                      ("No answer here", None)]
    bad = [g for g in got if isinstance(g, BadRow)]
    assert len(bad) == 1 and bad[0].row == 3 and "more cells than the header" in bad[0].reason
    tsv = [g for g in read_seeds(plan_source(SourceConfig(name="t", path=str(tmp_path / "mawps.tsv"),
                                                          fields={"problem": "Question", "answer": "Answer"})))]
    assert [(s.problem, s.answer) for s in tsv] == [("How many legs do 2 cats have?", "8")]
    with pytest.raises(SourceError, match="'Problem'"):  # a column the header lacks: before any row
        list(read_seeds(plan_source(SourceConfig(name="m", path=str(tmp_path / "mawps.csv"),
                                                 fields={"problem": "Problem"}))))


def test_boolean_and_list_answers_are_references(tmp_path):
    """TheoremQA's Answer column holds booleans, lists and numbers side by side."""
    rows = [{"Question": "Is 7 prime?", "Answer": True}, {"Question": "Roots of x^2-5x+4?", "Answer": [1, 4]},
            {"Question": "What is 2.5 * 2?", "Answer": 5.0}, {"Question": "Nested?", "Answer": [[1], [2]]}]
    (tmp_path / "tq.json").write_text(json.dumps(rows))
    got = list(read_seeds(plan_source(SourceConfig(name="tq", path=str(tmp_path / "tq.json"),
                                                   fields={"problem": "Question", "answer": "Answer"}))))
    assert [g.answer for g in got if isinstance(g, Seed)] == ["True", "[1, 4]", "5"]
    assert isinstance(got[-1], BadRow) and "expected a string, got list" in got[-1].reason


def test_an_answer_list_of_one_item_is_that_item(tmp_path):
    """Skywork-OR1 keeps its ground truth as JSON text of a one-item list; some sets as a list cell."""
    rows = [{"q": "a", "gt": '["2\\\\sqrt{2}"]'}, {"q": "b", "gt": ["42"]}, {"q": "c", "gt": [7]},
            {"q": "d", "gt": '["1", "2"]'}, {"q": "e", "gt": '["not json'}, {"q": "f", "gt": [1, 4]}]
    (tmp_path / "sky.json").write_text(json.dumps(rows))
    got = list(read_seeds(plan_source(SourceConfig(name="sky", path=str(tmp_path / "sky.json"),
                                                   fields={"problem": "q", "answer": "gt"}))))
    assert [g.answer for g in got] == ["2\\sqrt{2}", "42", "7", '["1", "2"]', '["not json', "[1, 4]"]

