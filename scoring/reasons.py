"""Reasons: the strongest TreeSHAP contributions of one lead, rendered as short signed sentences.

XGBoost's `pred_contribs=True` splits each lead's margin (log-odds) into one contribution per feature
plus a bias; they add up exactly to the margin. The top 3 positive and top 3 negative contributions
(at least `MIN_EFFECT` log-odds each, so noise is not presented as a reason) become sentences:
"+ viewed pricing 4x in 7 days", "- free e-mail domain", "+ Lead Origin is Lead Add Form".
Declared behavioural features (scoring.features) use their own sentence templates; any other column
is described from its value ("Country is missing", "Total Time Spent on Website = 1,532").
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from scoring.tabular import Preprocessor

TOP_N = 3
MIN_EFFECT = 0.01  # log-odds; ~0.25 percentage points around p=0.5

Describe = Callable[[str, float, str], "str | None"]


def top_contributions(contribs: np.ndarray, n: int = TOP_N, min_effect: float = MIN_EFFECT) -> tuple[list[int], list[int]]:
    """Indices of the `n` largest positive and `n` most negative contributions (bias column excluded)."""
    values = np.asarray(contribs, dtype=float)[:-1]
    order = np.argsort(-values, kind="stable")
    positive = [int(i) for i in order[:n] if values[i] >= min_effect]
    negative_order = np.argsort(values, kind="stable")
    negative = [int(i) for i in negative_order[:n] if values[i] <= -min_effect]
    return positive, negative


def top_contributions_batch(contribs: np.ndarray, n: int = TOP_N, min_effect: float = MIN_EFFECT) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised `top_contributions`: (rows x n) index arrays, -1 where fewer than n qualify."""
    values = np.asarray(contribs, dtype=float)[:, :-1]
    k = min(n, values.shape[1])
    # argsort per row is O(F log F); with tens of features it is cheaper than anything fancier.
    pos_order = np.argsort(-values, axis=1, kind="stable")[:, :k]
    neg_order = np.argsort(values, axis=1, kind="stable")[:, :k]
    rows = np.arange(values.shape[0])[:, None]
    pos = np.where(values[rows, pos_order] >= min_effect, pos_order, -1)
    neg = np.where(values[rows, neg_order] <= -min_effect, neg_order, -1)
    return pos, neg


def render(sign: str, phrase: str) -> str:
    """'+ phrase' or '- phrase'."""
    return f"{sign} {phrase}"


def describe_feature(pre: Preprocessor, index: int, value: float, sign: str) -> str:
    """The phrase for one feature value: a declared feature's template, else a generic description."""
    from scoring.features import describe_declared  # local: features imports nothing from here

    name = pre.feature_names[index]
    phrase = describe_declared(name, pre.decode(index, float(value)), sign)
    if phrase is not None:
        return phrase
    return pre.describe_value(index, float(value))


def reasons_for(pre: Preprocessor, x: np.ndarray, contribs: np.ndarray, n: int = TOP_N) -> tuple[str, ...]:
    """Top positive then top negative reasons for one lead (matrix row `x`, contributions `contribs`)."""
    positive, negative = top_contributions(contribs, n)
    out = [render("+", describe_feature(pre, i, x[i], "+")) for i in positive]
    out += [render("-", describe_feature(pre, i, x[i], "-")) for i in negative]
    return tuple(out)


def reasons_for_batch(pre: Preprocessor, X: np.ndarray, contribs: np.ndarray, n: int = TOP_N) -> list[tuple[str, ...]]:
    """`reasons_for` over many rows, with phrase caching (most leads share their top reasons)."""
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
                    text = render(sign, describe_feature(pre, int(i), v, sign))
                    cache[key] = text
                row.append(text)
        out.append(tuple(row))
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
