"""Reasons: the strongest TreeSHAP contributions of one lead, rendered as short signed sentences.

XGBoost's `pred_contribs=True` splits each lead's margin (log-odds) into one contribution per feature
plus a bias; they add up exactly to the margin. The top 3 positive and top 3 negative contributions
become sentences: "+ viewed pricing 4x in 7 days", "- free e-mail domain", "+ lead source is Reference".
`MIN_EFFECT` keeps noise out of the list, but only after the first reason: every scored lead gets
at least one, its strongest contribution whatever its size. A contribution of exactly zero is never
a reason (the feature did not move this lead's score); a lead whose contributions are all zero gets
`BASE_RATE_REASON` instead. Declared features (scoring.features) use their own sentence templates;
any other column is described from its value and label (scoring.phrasing): "lead source is
Reference", "14 minutes on the website", "created 12 days ago", "country unknown".
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from scoring.phrasing import Phrasing
from scoring.tabular import Preprocessor

TOP_N = 3
MIN_EFFECT = 0.01  # log-odds; ~0.25 percentage points around p=0.5
# Shown when no feature moved the score at all (every contribution is zero): say so, plainly.
BASE_RATE_REASON = "= nothing stands out: the score is the average for all leads"

Describe = Callable[[str, float, str], "str | None"]
Labels = Phrasing | Mapping[str, str] | None


def top_contributions(contribs: np.ndarray, n: int = TOP_N, min_effect: float = MIN_EFFECT) -> tuple[list[int], list[int]]:
    """Indices of the `n` largest positive and `n` most negative contributions (bias column excluded).

    Contributions below `min_effect` in size are left out, except the strongest one overall, so
    a lead with any non-zero contribution always has at least one; zeros are never returned.
    """
    values = np.asarray(contribs, dtype=float)[:-1]
    order = np.argsort(-values, kind="stable")
    positive = [int(i) for i in order[:n] if values[i] > 0 and values[i] >= min_effect]
    negative_order = np.argsort(values, kind="stable")
    negative = [int(i) for i in negative_order[:n] if values[i] < 0 and values[i] <= -min_effect]
    if not positive and not negative and values.size:
        strongest = int(np.argmax(np.abs(values)))
        if values[strongest] > 0:
            positive = [strongest]
        elif values[strongest] < 0:
            negative = [strongest]
    return positive, negative


def top_contributions_batch(contribs: np.ndarray, n: int = TOP_N, min_effect: float = MIN_EFFECT) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised `top_contributions`: (rows x n) index arrays, -1 where fewer than n qualify."""
    values = np.asarray(contribs, dtype=float)[:, :-1]
    k = min(n, values.shape[1])
    # argsort per row is O(F log F); with tens of features it is cheaper than anything fancier.
    pos_order = np.argsort(-values, axis=1, kind="stable")[:, :k]
    neg_order = np.argsort(values, axis=1, kind="stable")[:, :k]
    rows = np.arange(values.shape[0])[:, None]
    pos_values, neg_values = values[rows, pos_order], values[rows, neg_order]
    pos = np.where((pos_values > 0) & (pos_values >= min_effect), pos_order, -1)
    neg = np.where((neg_values < 0) & (neg_values <= -min_effect), neg_order, -1)
    if k:
        # Rows left with no reason at all keep their strongest non-zero contribution.
        empty = np.flatnonzero((pos < 0).all(axis=1) & (neg < 0).all(axis=1))
        if empty.size:
            strongest = np.argmax(np.abs(values[empty]), axis=1)
            top = values[empty, strongest]
            pos[empty[top > 0], 0] = strongest[top > 0]
            neg[empty[top < 0], 0] = strongest[top < 0]
    return pos, neg


def render(sign: str, phrase: str) -> str:
    """'+ phrase' or '- phrase'."""
    return f"{sign} {phrase}"


def describe_feature(pre: Preprocessor, index: int, value: float, sign: str, phrasing: Labels = None) -> str:
    """The phrase for one feature value: a declared feature's template, else its label and value."""
    from scoring.features import describe_declared  # local: features imports nothing from here

    name = pre.feature_names[index]
    phrase = describe_declared(name, pre.decode(index, float(value)), sign)
    if phrase is not None:
        return phrase
    book = Phrasing.of(phrasing)
    spec, _ = pre.spec_at(index)
    return pre.describe_value(index, float(value), label=book.label(spec.name), mapped_kind=book.kind(spec.name))


def reasons_for(pre: Preprocessor, x: np.ndarray, contribs: np.ndarray, n: int = TOP_N,
                phrasing: Labels = None) -> tuple[str, ...]:
    """Top positive then top negative reasons for one lead (matrix row `x`, contributions `contribs`).

    `phrasing` labels the columns: a `Phrasing` (labels and mapped kinds) or a {column: label} mapping.
    """
    book = Phrasing.of(phrasing)
    positive, negative = top_contributions(contribs, n)
    out = [render("+", describe_feature(pre, i, x[i], "+", book)) for i in positive]
    out += [render("-", describe_feature(pre, i, x[i], "-", book)) for i in negative]
    return tuple(out) or (BASE_RATE_REASON,)


def reasons_for_batch(pre: Preprocessor, X: np.ndarray, contribs: np.ndarray, n: int = TOP_N,
                      phrasing: Labels = None) -> list[tuple[str, ...]]:
    """`reasons_for` over many rows, with phrase caching (most leads share their top reasons)."""
    book = Phrasing.of(phrasing)
    pos, neg = top_contributions_batch(contribs, n)
    cache: dict[tuple[int, float, str], str] = {}
    out: list[tuple[str, ...]] = []
    for r in range(X.shape[0]):
        row: list[str] = []
        for sign, idx in (("+", pos[r]), ("-", neg[r])):
            for i in idx:
                if i < 0:
                    continue
                v = float(X[r, i])
                key = (int(i), v, sign)
                text = cache.get(key)
                if text is None:
                    text = render(sign, describe_feature(pre, int(i), v, sign, book))
                    cache[key] = text
                row.append(text)
        out.append(tuple(row) or (BASE_RATE_REASON,))
    return out


def reason_sets(pos: np.ndarray, neg: np.ndarray) -> list[tuple[frozenset[int], frozenset[int]]]:
    """Per row: (set of top positive feature indices, set of top negative ones), for agreement checks."""
    return [
        (frozenset(int(i) for i in p if i >= 0), frozenset(int(i) for i in q if i >= 0)) for p, q in zip(pos, neg)
    ]


def agreement(a: Sequence[tuple[frozenset[int], frozenset[int]]], b: Sequence[tuple[frozenset[int], frozenset[int]]]) -> float:
    """Share of rows whose top positive and top negative reason sets are identical in `a` and `b`."""
    if not a:
        return float("nan")
    same = sum(1 for x, y in zip(a, b) if x == y)
    return same / len(a)
