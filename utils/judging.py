"""A language model as a pairwise judge: the prompt, and how often its verdict follows position, not content.

The judge reads a question and two answers, A and B, and names the better one with one letter;
its verdict is the more likely of the two letters as its first token (one forward pass, no
parsing). Asked again with the answers swapped, a judge that reads the answers picks the same
answer, now under the other letter; a judge that follows position picks the same letter.
Zheng et al. (2023), "Judging LLM-as-a-Judge with MT-Bench and Chatbot Arena", measure this
position bias for large judges and propose asking both ways and counting only consistent verdicts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from utils.language_modeling import chat_prompt_ids

JUDGE_LETTERS = ("A", "B")
JUDGE_TEMPLATE = (
    "Which answer to the question is correct?\n\n"
    "Question: {question}\nAnswer A: {answer_a}\nAnswer B: {answer_b}\n\n"
    "Reply with one letter: A or B."
)


def judge_prompt_ids(tokenizer, question: str, answer_a: str, answer_b: str, max_length: int) -> list[int]:
    """The judge's chat prompt as token ids, refused if it would not fit in ``max_length`` tokens.

    A prompt longer than the model's context would be cut or would fail deep inside the model;
    the error says by how much it is too long instead.
    """
    for name, value in (("question", question), ("answer_a", answer_a), ("answer_b", answer_b)):
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"The judge needs a non-empty {name}; got {value!r}.")
    content = JUDGE_TEMPLATE.format(question=question, answer_a=answer_a, answer_b=answer_b)
    ids = chat_prompt_ids(tokenizer, [{"role": "user", "content": content}])
    if len(ids) > max_length:
        raise ValueError(
            f"The judge prompt is {len(ids):,} tokens, longer than the {max_length:,} the judge can read: "
            f"shorten the answers (or the question) by {len(ids) - max_length:,} tokens, or use a judge with a longer context."
        )
    return ids


@dataclass(frozen=True)
class PositionReport:
    """Shares of the pairs judged both ways: the same answer both times, or the same letter both times."""

    consistent: float  # picked the same answer in both orders: the verdict followed content
    always_a: float  # picked A both times: the verdict followed the first position
    always_b: float  # picked B both times
    right_when_consistent: float  # of the consistent pairs, the share where the picked answer is the right one
    right_per_verdict: float  # the share of all single verdicts (both orders) that picked the right answer


def position_report(picked_a: Sequence[bool], picked_a_swapped: Sequence[bool], right_is_a: Sequence[bool]) -> PositionReport:
    """Compare each pair's verdict with the verdict on the same pair with the answers swapped.

    ``picked_a[i]``: the judge chose A for pair i; ``picked_a_swapped[i]``: it chose A once the two
    answers traded places; ``right_is_a[i]``: the right answer was A in the first order.

    >>> position_report([True, True, False], [False, True, True], [True, True, True]).consistent
    0.6666666666666666
    """
    picked_a, swapped, right_a = (np.asarray(values, dtype=bool) for values in (picked_a, picked_a_swapped, right_is_a))
    if not len(picked_a) == len(swapped) == len(right_a) or len(picked_a) == 0:
        raise ValueError(f"Need one verdict per order and one right answer per pair, at least one pair; got "
                         f"{len(picked_a)}, {len(swapped)} and {len(right_a)}.")  # fmt: skip
    consistent = picked_a != swapped
    right_first, right_swapped = picked_a == right_a, swapped == ~right_a
    return PositionReport(
        consistent=float(consistent.mean()),
        always_a=float((picked_a & swapped).mean()),
        always_b=float((~picked_a & ~swapped).mean()),
        right_when_consistent=float(right_first[consistent].mean()) if consistent.any() else float("nan"),
        right_per_verdict=float(np.concatenate([right_first, right_swapped]).mean()),
    )
