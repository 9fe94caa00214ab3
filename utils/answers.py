"""Reading what a model wrote: find the answer in a generation, and score generations.

A classifier's prediction is an index; a language model's is text, and text comes in every shape:
``"negative"``, ``" Negative."``, ``"The sentiment of this review is negative."``, ``"negative or
positive"``. Scoring it takes a parser, and the parser is a choice that moves the score:

- **strict**: the generation, without the whitespace around it, is exactly one of the answers
  as the prompt asked for it (lower case, nothing else). This measures format and skill together.
- **lenient**: the generation names exactly one of the answers as a word, anywhere, in any
  case. A generation that names two answers ("negative or positive") has no lenient answer:
  hedging is not credited.

Predictions are returned as indices into ``labels``, with ``NO_ANSWER`` (-1) when the parser
finds none, so the course's metrics and paired bootstrap (``utils.evaluation``) apply unchanged;
``NO_ANSWER`` never equals a reference, so it always counts as wrong.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

NO_ANSWER = -1
STRICT = "strict"
LENIENT = "lenient"
MODES = (STRICT, LENIENT)


@dataclass(frozen=True)
class ParsedAnswer:
    """What the parser found in one generation: the strict answer, the lenient one, every answer named."""

    text: str
    strict: int
    lenient: int
    named: tuple[int, ...]


def _check_labels(labels: Sequence[str]) -> tuple[str, ...]:
    labels = tuple(labels)
    if len(labels) < 2 or len({label.lower() for label in labels}) != len(labels):
        raise ValueError(f"Give at least two different answers to look for, e.g. ('negative', 'positive'); got {labels!r}.")
    if any(not re.fullmatch(r"\w+", label) for label in labels):
        raise ValueError(f"Each answer must be one word of letters or digits; got {labels!r}.")
    return labels


def labels_named(text: str, labels: Sequence[str]) -> tuple[int, ...]:
    """Indices of the answers that ``text`` names as whole words, case-insensitive, in order of first mention.

    >>> labels_named("Negative, not positive.", ("negative", "positive"))
    (0, 1)
    >>> labels_named("positively negative-ish", ("negative", "positive"))
    (0,)
    """
    labels = _check_labels(labels)
    pattern = re.compile(r"\b(" + "|".join(re.escape(label) for label in labels) + r")\b", re.IGNORECASE)
    lowered = [label.lower() for label in labels]
    found: list[int] = []
    for match in pattern.finditer(text):
        index = lowered.index(match.group(1).lower())
        if index not in found:
            found.append(index)
    return tuple(found)


def parse_answer(text: str, labels: Sequence[str]) -> ParsedAnswer:
    """Parse one generation strictly and leniently (see the module's docstring for both rules).

    >>> parse_answer(" negative", ("negative", "positive"))
    ParsedAnswer(text=' negative', strict=0, lenient=0, named=(0,))
    >>> parse_answer("The review is Positive.", ("negative", "positive"))
    ParsedAnswer(text='The review is Positive.', strict=-1, lenient=1, named=(1,))
    >>> parse_answer("negative or positive", ("negative", "positive")).lenient
    -1
    """
    if not isinstance(text, str):
        raise TypeError(f"A generation must be a string (decode the token ids first); got {type(text).__name__}.")
    labels = _check_labels(labels)
    named = labels_named(text, labels)
    stripped = text.strip()
    strict = labels.index(stripped) if stripped in labels else NO_ANSWER
    lenient = named[0] if len(named) == 1 else NO_ANSWER
    return ParsedAnswer(text=text, strict=strict, lenient=lenient, named=named)


def parse_answers(texts: Sequence[str], labels: Sequence[str], mode: str) -> np.ndarray:
    """The answer index of every generation under ``mode`` ("strict" or "lenient"), ``NO_ANSWER`` for none.

    >>> parse_answers(["negative", "Negative!", "no idea"], ("negative", "positive"), "lenient").tolist()
    [0, 0, -1]
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}; got {mode!r}.")
    return np.array([getattr(parse_answer(text, labels), mode) for text in texts], dtype=int)


def answered_share(predictions: Sequence[int]) -> float:
    """The share of generations in which the parser found an answer."""
    return float(np.mean(np.asarray(predictions) != NO_ANSWER))


def balanced_accuracy(predictions: Sequence[int], references: Sequence[int]) -> float:
    """The mean over the classes present in ``references`` of the share of that class answered right.

    A model that always gives the same answer scores 1 / (number of classes), whatever the
    classes' shares; ``NO_ANSWER`` counts as wrong.

    >>> balanced_accuracy([1, 1, 1, 1], [0, 1, 1, 1])
    0.5
    >>> balanced_accuracy([0, -1, 1, 1], [0, 0, 1, 1])
    0.75
    """
    predictions, references = np.asarray(predictions), np.asarray(references)
    if len(predictions) != len(references) or len(references) == 0:
        raise ValueError(f"Need as many predictions as references, at least one: got {len(predictions)} and {len(references)}.")
    recalls = [np.mean(predictions[references == label] == label) for label in np.unique(references)]
    return float(np.mean(recalls))


def majority_vote(answers: Sequence[int]) -> int:
    """The answer given most often among several samples, ``NO_ANSWER`` ignored; a tie has no answer.

    >>> majority_vote([1, 0, 1, -1]), majority_vote([1, 0, -1]), majority_vote([-1, -1])
    (1, -1, -1)
    """
    counts = Counter(answer for answer in answers if answer != NO_ANSWER).most_common(2)
    if not counts or (len(counts) == 2 and counts[0][1] == counts[1][1]):
        return NO_ANSWER
    return int(counts[0][0])


def pass_at_k(num_samples: int, num_correct: int, k: int) -> float:
    """The unbiased estimate of pass@k from ``num_samples`` samples of which ``num_correct`` are right.

    Chen et al. (2021), "Evaluating Large Language Models Trained on Code", eq. 1: the
    probability that at least one of k samples drawn without replacement from the n is right,
    1 - C(n - c, k) / C(n, k), computed as a product so that it stays exact for large n.

    >>> pass_at_k(4, 1, 1), pass_at_k(4, 1, 4), pass_at_k(4, 0, 2)
    (0.25, 1.0, 0.0)
    """
    if not 0 <= num_correct <= num_samples or not 1 <= k <= num_samples:
        raise ValueError(
            f"Need 0 <= correct <= samples and 1 <= k <= samples; got samples={num_samples}, "
            f"correct={num_correct}, k={k}. Draw at least k samples per prompt."
        )
    if num_samples - num_correct < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / n for n in range(num_samples - num_correct + 1, num_samples + 1))


def _folded(text: str) -> str:
    """Lower case without accents: "Bogotá" and "BOGOTA" read the same."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(char for char in decomposed if not unicodedata.combining(char)).casefold()


def names_answer(text: str, answer: str) -> bool:
    """Whether ``text`` contains ``answer`` as whole words, ignoring case and accents: a lenient
    check for a free-text answer such as a city's name.

    >>> names_answer("The capital is Bogota.", "Bogotá"), names_answer("Parisian", "Paris")
    (True, False)
    """
    if not answer.strip():
        raise ValueError("The expected answer is empty: give the text a right answer must contain.")
    pattern = r"(?<!\w)" + re.escape(_folded(answer.strip())) + r"(?!\w)"
    return re.search(pattern, _folded(text)) is not None
