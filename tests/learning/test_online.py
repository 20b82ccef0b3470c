"""The online challenger: feature conversion, learning, the blend, and authenticated snapshots."""

from __future__ import annotations

import hashlib
import hmac
import math
import pickle

import numpy as np
import pytest

from scoring.online import MAGIC, OnlineModel, OnlineModelError, blend, to_river
from scoring.prequential import auc

KEY = b"k" * 32
RAN: list[str] = []  # what a forged pickle would do if it were ever loaded


def _mark() -> str:
    RAN.append("unpickled")
    return "pwned"


class Boom:
    """Unpickling this runs _mark: stands in for a malicious payload."""

    def __reduce__(self) -> tuple[object, tuple[()]]:
        return _mark, ()


def rows(n: int, seed: int) -> list[tuple[dict[str, object], bool]]:
    """Feature vectors shaped like scoring.features' (counts, a float, a category, a boolean, None)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        intent = rng.normal()
        pricing = int(rng.poisson(np.exp(0.5 + 0.8 * intent)))
        industry = str(rng.choice(["Software", "Retail", "Education"]))
        free = bool(rng.random() < 0.3)
        logit = -1.5 + 1.2 * intent + (0.8 if industry == "Software" else -0.4) - 0.6 * free
        won = bool(rng.random() < 1 / (1 + math.exp(-logit)))
        out.append(({"page_views_pricing_7d": pricing, "days_since_last_activity": float(rng.exponential(5)),
                     "industry": industry, "email_is_free": free, "country": None}, won))
    return out


def test_vectors_are_converted_as_river_reads_them() -> None:
    x = {"a": 3, "b": 2.5, "c": True, "d": False, "e": None, "f": "Software", "g": float("nan"), "h": "",
         "i": np.int64(4), "j": np.float32(0.5)}
    assert to_river(x) == {"a": 3.0, "b": 2.5, "c": 1.0, "d": 0.0, "f": "Software", "i": 4.0, "j": 0.5}
    assert isinstance(to_river(x)["a"], float)
    # With declared columns, only those are read (a new field in the store does not change the model's input).
    assert to_river(x, ["a", "f", "missing"]) == {"a": 3.0, "f": "Software"}


def test_before_learning_the_answer_is_the_prior_and_then_the_running_base_rate() -> None:
    model = OnlineModel(seed=1)
    assert model.predict_proba({"x": 1.0}) == 0.5
    for _ in range(3):
        model.learn({"x": 1.0}, False)
    assert model.n_learned == 3 and model.n_positive == 0
    p = model.predict_proba({"x": 1.0})
    assert 0.0 < p < 0.5
    assert model.base_rate == pytest.approx(1 / 5)


@pytest.mark.parametrize("kind", ["arf", "hat", "linear"])
def test_it_learns_a_funnel_from_mixed_vectors(kind: str) -> None:
    model = OnlineModel(kind, seed=3, columns=["page_views_pricing_7d", "days_since_last_activity", "industry",
                                               "email_is_free", "country"])
    for x, y in rows(3000, seed=5):
        model.learn(x, y)
    test = rows(1500, seed=6)
    p = [model.predict_proba(x) for x, _ in test]
    assert all(0.0 < v < 1.0 for v in p)
    assert auc([int(y) for _, y in test], p) > 0.65  # a constant scores 0.5; the generating model about 0.75
    assert model.n_learned == 3000 and 0 < model.n_positive < 3000


def test_weights_count_as_repetitions() -> None:
    heavy, plain = OnlineModel("hat", seed=0), OnlineModel("hat", seed=0)
    for x, y in rows(400, seed=2):
        heavy.learn(x, y, weight=5.0 if y else 1.0)
        plain.learn(x, y)
    test = [x for x, _ in rows(300, seed=9)]
    assert np.mean([heavy.predict_proba(x) for x in test]) > np.mean([plain.predict_proba(x) for x in test]) + 0.05
    arf = OnlineModel("arf", seed=0)
    arf.learn({"x": 1.0}, True, weight=0.0)
    assert arf.n_learned == 0 and arf.predict_proba({"x": 1.0}) == 0.5
    with pytest.raises(ValueError):
        arf.learn({"x": 1.0}, True, weight=-1.0)
    with pytest.raises(ValueError):
        OnlineModel("svm")


def test_blend_is_on_log_odds_and_stays_finite() -> None:
    assert blend(0.2, 0.9, 0.0) == pytest.approx(0.2)
    assert blend(0.2, 0.9, 1.0) == pytest.approx(0.9)
    # Equal weights: the geometric mean of the odds.
    odds = math.sqrt((0.2 / 0.8) * (0.9 / 0.1))
    assert blend(0.2, 0.9, 0.5) == pytest.approx(odds / (1 + odds))
    assert blend(0.3, 0.3, 0.7) == pytest.approx(0.3)
    for pc, po in ((0.0, 1.0), (1.0, 1.0), (0.0, 0.0)):
        assert 0.0 < blend(pc, po, 0.5) < 1.0
    with pytest.raises(ValueError):
        blend(0.5, 0.5, 1.5)


def test_snapshots_round_trip_with_the_key() -> None:
    model = OnlineModel("arf", seed=4, columns=["page_views_pricing_7d", "industry"], schema_version="v3")
    for x, y in rows(500, seed=1):
        model.learn(x, y)
    data = model.to_bytes(KEY)
    assert data.startswith(MAGIC)
    back = OnlineModel.from_bytes(data, KEY)
    assert (back.kind, back.seed, back.columns, back.schema_version) == ("arf", 4, model.columns, "v3")
    assert (back.n_learned, back.n_positive) == (model.n_learned, model.n_positive)
    test = [x for x, _ in rows(50, seed=2)]
    assert [back.predict_proba(x) for x in test] == [model.predict_proba(x) for x in test]
    assert OnlineModel.from_bytes(data, KEY, schema_version="v3").schema_version == "v3"
    with pytest.raises(OnlineModelError, match="schema"):
        OnlineModel.from_bytes(data, KEY, schema_version="v4")


def test_the_linear_kind_learns_predicts_and_round_trips() -> None:
    columns = ["page_views_pricing_7d", "days_since_last_activity", "industry", "email_is_free", "country"]
    model = OnlineModel("linear", seed=2, columns=columns, schema_version="v3")
    assert OnlineModel(seed=2).kind == "linear"  # the default, chosen by bench.drift
    train = rows(2000, seed=7)
    model.warm_start(train[:500], list(range(500)))  # a training window, replayed in decision-time order
    for x, y in train[500:]:
        model.learn(x, y, weight=2.0 if y else 1.0)
    test = rows(1000, seed=8)
    p = [model.predict_proba(x) for x, _ in test]
    assert auc([int(y) for _, y in test], p) > 0.65 and all(0.0 < v < 1.0 for v in p)
    # A level never seen, a missing number and an empty vector still get a probability.
    unseen = {"page_views_pricing_7d": 2, "industry": "Mining", "email_is_free": True}
    assert 0.0 < model.predict_proba(unseen) < 1.0 and 0.0 < model.predict_proba({}) < 1.0
    back = OnlineModel.from_bytes(model.to_bytes(KEY), KEY, schema_version="v3")
    assert (back.kind, back.columns, back.n_learned) == ("linear", columns, 2000)
    assert [back.predict_proba(x) for x, _ in test[:50]] == p[:50]
    # Learning goes on from the snapshot exactly as it would have from the original.
    for x, y in rows(100, seed=9):
        back.learn(x, y)
        model.learn(x, y)
    assert back.predict_proba(unseen) == model.predict_proba(unseen)
    with pytest.raises(ValueError, match="decision time"):
        model.warm_start(train[:3], [1, 2])


def test_warm_start_replays_in_decision_time_order() -> None:
    data = rows(300, seed=3)
    times = [(i * 7919) % 300 for i in range(300)]  # a shuffled order
    ordered = OnlineModel("linear", seed=0)
    for i in sorted(range(300), key=lambda i: times[i]):
        ordered.learn(*data[i])
    warm = OnlineModel("linear", seed=0)
    warm.warm_start(data, times)
    probe = data[0][0]
    assert warm.predict_proba(probe) == ordered.predict_proba(probe) and warm.n_learned == 300


def test_forged_or_altered_snapshots_are_refused_without_unpickling() -> None:
    model = OnlineModel(seed=0)
    model.learn({"x": 1.0}, True)
    data = model.to_bytes(KEY)
    with pytest.raises(OnlineModelError, match="signature"):
        OnlineModel.from_bytes(data, b"another key")
    flipped = bytearray(data)
    flipped[-5] ^= 0x01
    with pytest.raises(OnlineModelError, match="signature"):
        OnlineModel.from_bytes(bytes(flipped), KEY)
    with pytest.raises(OnlineModelError, match="header"):
        OnlineModel.from_bytes(data[len(MAGIC):], KEY)
    with pytest.raises(OnlineModelError):
        OnlineModel.from_bytes(MAGIC + b"short", KEY)
    # A malicious pickle behind a made-up tag is never loaded.
    evil = pickle.dumps(Boom())
    RAN.clear()
    with pytest.raises(OnlineModelError, match="signature"):
        OnlineModel.from_bytes(MAGIC + b"\0" * 32 + evil, KEY)
    assert RAN == []
    # Signed with the right key but not an online model (a snapshot of something else): refused.
    signed = MAGIC + hmac.new(KEY, MAGIC + pickle.dumps({"a": 1}), hashlib.sha256).digest() + pickle.dumps({"a": 1})
    with pytest.raises(OnlineModelError, match="not an OnlineModel"):
        OnlineModel.from_bytes(signed, KEY)
    with pytest.raises(ValueError):
        model.to_bytes(b"")
