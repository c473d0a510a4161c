"""Figures printed for people: rounded, and n/a where there is nothing to show."""

from factory.report import diversity_line, figure


def test_figures_are_rounded_and_empty_is_na():
    assert figure(29.200000000000003) == "29.2"
    assert figure([12.200000000000001, 29.2, 40.0]) == "12.2/29.2/40"
    assert figure(None) == figure([]) == figure({}) == "n/a"
    assert figure({"gsm8k": 3, "math": 1}) == "gsm8k 3, math 1"
    assert figure(123456.7) == "123,457"


def test_an_empty_corpus_prints_na_not_none():
    line = diversity_line({"kept": 0, "distinct_1": 0.0, "mean_reasoning_words": None, "per_source": None})
    assert line == "diversity: n/a (no traces kept)" and "None" not in line
