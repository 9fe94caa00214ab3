"""The answer parser and the scores of generated text (utils/answers.py)."""

import math

import numpy as np
import pytest

from utils.answers import (
    NO_ANSWER,
    answered_share,
    balanced_accuracy,
    majority_vote,
    parse_answer,
    parse_answers,
    pass_at_k,
)

LABELS = ("negative", "positive")


@pytest.mark.parametrize(
    ("text", "strict", "lenient"),
    [
        ("negative", 0, 0),
        ("  positive\n", 1, 1),  # whitespace around the answer is not a format error
        ("Positive", NO_ANSWER, 1),  # capitals
        ("negative.", NO_ANSWER, 0),  # punctuation
        ("The sentiment of this review is negative.", NO_ANSWER, 0),  # a sentence around it
        ("negative or positive", NO_ANSWER, NO_ANSWER),  # two answers at once
        ("Positive or negative? Positive.", NO_ANSWER, NO_ANSWER),
        ("", NO_ANSWER, NO_ANSWER),  # an empty generation
        ("I cannot tell.", NO_ANSWER, NO_ANSWER),  # no answer
        ("positively", NO_ANSWER, NO_ANSWER),  # a longer word is not the answer
        ("<|im_end|>", NO_ANSWER, NO_ANSWER),
    ],
)
def test_strict_and_lenient_answers(text, strict, lenient):
    parsed = parse_answer(text, LABELS)
    assert (parsed.strict, parsed.lenient) == (strict, lenient)


def test_labels_must_be_distinct_words():
    with pytest.raises(ValueError, match="two different answers"):
        parse_answer("yes", ("yes", "Yes"))
    with pytest.raises(ValueError, match="one word"):
        parse_answer("yes", ("very good", "bad"))


def test_a_generation_that_is_not_text_is_refused_with_what_to_do():
    with pytest.raises(TypeError, match="decode"):
        parse_answer([1, 2, 3], LABELS)


def test_parse_answers_checks_the_mode():
    with pytest.raises(ValueError, match="strict"):
        parse_answers(["negative"], LABELS, "loose")
    assert parse_answers(["negative", "Positive"], LABELS, "strict").tolist() == [0, NO_ANSWER]


def test_answered_share_and_balanced_accuracy():
    assert answered_share([0, NO_ANSWER, 1, 1]) == 0.75
    references = np.array([0] * 30 + [1] * 70)
    assert balanced_accuracy(np.ones(100, dtype=int), references) == 0.5  # a constant answer cannot game it
    assert balanced_accuracy(np.full(100, NO_ANSWER), references) == 0.0
    assert balanced_accuracy(references, references) == 1.0
    with pytest.raises(ValueError, match="as many"):
        balanced_accuracy([0, 1], [0])


def test_majority_vote_ignores_missing_answers_and_ties():
    assert majority_vote([1, 1, 0]) == 1
    assert majority_vote([NO_ANSWER, NO_ANSWER, 0]) == 0
    assert majority_vote([0, 1]) == NO_ANSWER
    assert majority_vote([]) == NO_ANSWER


def test_pass_at_k_matches_the_combinatorial_formula():
    for n, c, k in [(10, 3, 1), (10, 3, 5), (20, 0, 4), (20, 19, 2), (5, 5, 5)]:
        expected = 1 - math.comb(n - c, k) / math.comb(n, k)
        assert pass_at_k(n, c, k) == pytest.approx(expected)
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)  # pass@1 is the share of right samples


def test_pass_at_k_needs_enough_samples():
    with pytest.raises(ValueError, match="at least k samples"):
        pass_at_k(2, 1, 3)
    with pytest.raises(ValueError):
        pass_at_k(4, 5, 1)
