"""Experience-Delayed Replay (EDR): weights for matured labels, by how late they came and how wrong we were.

For label i with delay d_i (days from its decision time to the time its label arrived), error e_i
(|y_i - p_i|, p_i the probability the live model gave at the decision) and class c_i (won or lost):

    r_i = floor + (1 - floor) * 2 ** (-d_i / half_life_days) * e_i ** error_power
    w_i = r_i / mean(r_j for j in class c_i)

- Shorter delays weigh more: a label that matured quickly describes the world closer to now (halving
  every `half_life_days`).
- Larger errors weigh more: what the live model got wrong is what it has to learn (error_power 0
  ignores the error; 1 is linear).
- `floor` keeps every label in play (r_i >= floor, so w_i >= floor / mean_class(r) >= floor).
- Normalising *within each class* makes each class's mean weight exactly 1, so the weighted base
  rate equals the raw one. Without it the raw delay weights would skew the base rate: wins mature
  at once while losses wait out the maturity window, so by delay alone wins would outweigh losses and
  a model trained on them would over-predict conversion.

`replay_order` turns the weights into an order for the online learner: weighted sampling without
replacement (Efraimidis-Spirakis keys u ** (1 / w_i)), so heavy labels tend to come first and every
label comes exactly once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

DEFAULT_HALF_LIFE_DAYS = 14.0
DEFAULT_ERROR_POWER = 1.0
DEFAULT_FLOOR = 0.2


def edr_weights(
    delays_days: Sequence[float],
    errors: Sequence[float],
    won: Sequence[bool],
    *,
    half_life_days: float = DEFAULT_HALF_LIFE_DAYS,
    error_power: float = DEFAULT_ERROR_POWER,
    floor: float = DEFAULT_FLOOR,
) -> np.ndarray:
    """EDR weight per label (formula in the module docstring); each class's weights average 1.

    Raises ValueError on sequences of different lengths, negative or non-finite delays, errors outside
    [0, 1], or parameters out of range.
    """
    d = np.asarray(delays_days, dtype=float)
    e = np.asarray(errors, dtype=float)
    y = np.asarray(won, dtype=bool)
    if not (d.shape == e.shape == y.shape) or d.ndim != 1:
        raise ValueError("delays, errors and labels must be 1-D sequences of the same length")
    if half_life_days <= 0 or error_power < 0 or not 0.0 < floor <= 1.0:
        raise ValueError("need half_life_days > 0, error_power >= 0 and 0 < floor <= 1")
    if d.size == 0:
        return np.zeros(0)
    if not np.all(np.isfinite(d)) or np.any(d < 0):
        raise ValueError("delays must be finite and non-negative (a label cannot arrive before its decision)")
    if not np.all(np.isfinite(e)) or np.any(e < 0) or np.any(e > 1):
        raise ValueError("errors must lie in [0, 1] (|y - p| of a probability)")
    raw = floor + (1.0 - floor) * np.exp2(-d / half_life_days) * e ** error_power
    out = np.empty_like(raw)
    for cls in (True, False):
        mask = y == cls
        if mask.any():
            out[mask] = raw[mask] / raw[mask].mean()
    return out


def replay_order(
    delays_days: Sequence[float],
    errors: Sequence[float],
    won: Sequence[bool],
    *,
    seed: int = 0,
    **kw: Any,
) -> list[int]:
    """Indices in the order the online learner should see them: weighted sampling without replacement."""
    weights = edr_weights(delays_days, errors, won, **kw)
    if weights.size == 0:
        return []
    u = np.random.default_rng(seed).random(weights.size)
    # log(u) / w is the log of the Efraimidis-Spirakis key u ** (1 / w): same order, no underflow.
    keys = np.log(np.maximum(u, np.finfo(float).tiny)) / weights
    return [int(i) for i in np.argsort(-keys, kind="stable")]
