"""The online challenger: a River classifier that learns one matured label at a time.

It reads the same feature vectors as the champion (the dicts of scoring.features: `build_offline`,
`RedisFeatureStore.get_online`, `EventIndex.features_at`) and converts them as River expects:
numbers become floats, booleans 0/1, None is dropped (River's trees send a missing value down the
branch most training rows took), and strings stay strings. Strings are kept as *nominal values*
rather than one-hot `name=value` keys on purpose: Hoeffding trees split nominal attributes natively
without knowing the levels up front (a level first seen next month just becomes a new branch), while
with one-hot keys an absent key reads as "missing", not as 0, so a row would be routed by the
majority path instead of by "not this level".

Kinds (bench.drift measured them alone on its funnels; `linear` is the default): `arf`, an Adaptive Random Forest (`river.forest.ARFClassifier`: bagged Hoeffding trees, each with
its own ADWIN that replaces a tree when its error drifts); `hat`, a single Hoeffding Adaptive Tree, cheaper
and less accurate; `linear`, a logistic regression trained by SGD on the same vectors: numbers compressed
with sign(x) * log1p(|x|) (counts are heavy-tailed) and standardised by running mean and variance (a
missing number reads as the mean), strings one-hot encoded (a level first seen later gets its own weight
from then on; an absent string is all zeros). ARF's `learn_one` ignores sample weights, so a weight w is
applied as a multiplicity: floor(w) passes plus one more with probability frac(w) (the expected number
of passes is w); the tree and the regression learn with `w` directly.

`warm_start` replays a training window in decision-time order: labels mature in label order (wins at
once, losses only after the maturity window), so a learner fed in that order first sees only wins.

Snapshots (`to_bytes`/`from_bytes`) are pickles, so they are authenticated: a version header, then an
HMAC-SHA256 tag over header and payload, checked with `hmac.compare_digest` *before* anything is
unpickled. Bytes that fail the check are never unpickled.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import pickle
import random
from collections.abc import Mapping, Sequence
from typing import Any

MAGIC = b"LBONLINE1\n"  # format version: a change to the layout or the class gets a new one
TAG_BYTES = 32
KINDS = ("arf", "hat", "linear")
LINEAR_LR = 0.005  # SGD step of the linear kind (weights and intercept); bench.drift: 0.005 ~ 0.002 > 0.02 > 0.1
LINEAR_L2 = 1e-4
CLIP = 1e-6  # probabilities are kept inside [CLIP, 1 - CLIP] so log-odds stay finite


class OnlineModelError(ValueError):
    """A snapshot that is forged, corrupted, of another format, or of another feature schema."""


def to_river(x: Mapping[str, Any], columns: Sequence[str] | None = None) -> dict[str, float | str]:
    """A feature vector as River reads it: floats, booleans as 0/1, strings kept, None and NaN dropped."""
    out: dict[str, float | str] = {}
    names = columns if columns is not None else x.keys()
    for name in names:
        value = x.get(name)
        if value is None:
            continue
        if isinstance(value, bool):
            out[name] = 1.0 if value else 0.0
        elif isinstance(value, (int, float)):
            number = float(value)
            if math.isfinite(number):
                out[name] = number
        elif isinstance(value, str):
            if value:
                out[name] = value
        else:
            try:  # numpy scalars and the like
                number = float(value)
            except (TypeError, ValueError):
                out[name] = str(value)
            else:
                if math.isfinite(number):
                    out[name] = number
    return out


def _clip(p: float) -> float:
    return min(1.0 - CLIP, max(CLIP, float(p)))


def _logit(p: float) -> float:
    p = _clip(p)
    return math.log(p / (1.0 - p))


def compress(x: Mapping[str, float]) -> dict[str, float]:
    """sign(v) * log1p(|v|) of every value: what the linear kind standardises (a module function, so it pickles)."""
    return {k: math.copysign(math.log1p(abs(v)), v) for k, v in x.items()}


def blend(p_champion: float, p_online: float, weight: float) -> float:
    """Log-odds blend: sigmoid((1 - w) * logit(p_champion) + w * logit(p_online)), probabilities clipped."""
    if not 0.0 <= weight <= 1.0:
        raise ValueError("the blend weight must be between 0 and 1")
    z = (1.0 - weight) * _logit(p_champion) + weight * _logit(p_online)
    return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))


class OnlineModel:
    """A River classifier (logistic regression by default, Adaptive Random Forest or Hoeffding Adaptive Tree) over
    the same feature vectors the champion reads."""

    def __init__(self, kind: str = "linear", *, seed: int = 0, columns: Sequence[str] | None = None,
                 schema_version: str | None = None) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown online model kind {kind!r}; use one of {', '.join(KINDS)}")
        self.kind = kind
        self.seed = seed
        self.columns = list(columns) if columns is not None else None
        self.schema_version = schema_version
        self.n_learned = 0
        self.n_positive = 0
        self._rng = random.Random(seed)  # only for ARF's weight-as-multiplicity draws
        self._model = self._new_model()

    def _new_model(self) -> Any:
        from river import compose, forest, linear_model, optim, preprocessing, tree

        if self.kind == "linear":
            numbers = compose.SelectType(float) | compose.FuncTransformer(compress) | preprocessing.StandardScaler()
            levels = compose.SelectType(str) | preprocessing.OneHotEncoder()
            return (numbers + levels) | linear_model.LogisticRegression(
                optimizer=optim.SGD(LINEAR_LR), l2=LINEAR_L2, intercept_lr=LINEAR_LR)
        if self.kind == "hat":
            return tree.HoeffdingAdaptiveTreeClassifier(grace_period=50, seed=self.seed)
        # ARF picks max_features from the first row it sees; with None values dropped that row may be short,
        # so the count comes from the declared columns when there are any.
        max_features: int | str = round(math.sqrt(len(self.columns))) if self.columns else "sqrt"
        return forest.ARFClassifier(n_models=10, max_features=max_features, grace_period=50, seed=self.seed)

    @property
    def base_rate(self) -> float:
        """The running share of positives, Laplace-smoothed (0.5 before any label)."""
        return (self.n_positive + 1.0) / (self.n_learned + 2.0)

    def predict_proba(self, x: Mapping[str, Any]) -> float:
        """P(won) for one feature vector; the running base rate while River cannot answer yet."""
        if self.n_learned == 0:
            return self.base_rate
        answer = self._model.predict_proba_one(to_river(x, self.columns))
        total = sum(answer.values()) if answer else 0.0
        if total <= 0 or not math.isfinite(total):
            return _clip(self.base_rate)
        return _clip(answer.get(True, 0.0) / total)

    def learn(self, x: Mapping[str, Any], y: bool, weight: float = 1.0) -> None:
        """Learn one labelled vector, counted `weight` times (0 learns nothing)."""
        if not math.isfinite(weight) or weight < 0:
            raise ValueError("the weight must be a finite, non-negative number")
        if weight == 0:
            return
        row = to_river(x, self.columns)
        label = bool(y)
        if self.kind in ("hat", "linear"):
            self._model.learn_one(row, label, w=weight)
        else:
            passes = int(weight) + (1 if self._rng.random() < weight - int(weight) else 0)
            for _ in range(passes):
                self._model.learn_one(row, label)
        self.n_learned += 1
        self.n_positive += int(label)

    def warm_start(self, rows: Sequence[tuple[Mapping[str, Any], bool]],
                   decision_times: Sequence[Any]) -> None:
        """Learn a training window's labelled vectors in decision-time order (ties keep their given order)."""
        if len(rows) != len(decision_times):
            raise ValueError("one decision time per row")
        for i in sorted(range(len(rows)), key=lambda i: decision_times[i]):
            x, y = rows[i]
            self.learn(x, y)

    def to_bytes(self, key: bytes) -> bytes:
        """A snapshot: the version header, an HMAC-SHA256 tag over header and payload, then the pickle."""
        if not key:
            raise ValueError("a snapshot needs a non-empty key")
        payload = pickle.dumps(self, protocol=pickle.HIGHEST_PROTOCOL)
        tag = hmac.new(key, MAGIC + payload, hashlib.sha256).digest()
        return MAGIC + tag + payload

    @classmethod
    def from_bytes(cls, data: bytes, key: bytes, *, schema_version: str | None = None) -> OnlineModel:
        """Load a snapshot; raises OnlineModelError on a bad header or signature (nothing unauthenticated is
        unpickled), or when `schema_version` is given and differs from the snapshot's."""
        if not key:
            raise ValueError("a snapshot needs a non-empty key")
        if not isinstance(data, (bytes, bytearray)) or not bytes(data).startswith(MAGIC):
            raise OnlineModelError("not an online-model snapshot (unknown or missing version header)")
        data = bytes(data)
        tag, payload = data[len(MAGIC): len(MAGIC) + TAG_BYTES], data[len(MAGIC) + TAG_BYTES:]
        expected = hmac.new(key, MAGIC + payload, hashlib.sha256).digest()
        if len(tag) != TAG_BYTES or not hmac.compare_digest(tag, expected):
            raise OnlineModelError("online-model snapshot signature does not match (wrong key or altered bytes)")
        try:
            model = pickle.loads(payload)
        except Exception as exc:  # authenticated but unreadable: written by an incompatible version
            raise OnlineModelError(f"online-model snapshot could not be read: {exc}") from exc
        if not isinstance(model, cls):
            raise OnlineModelError(f"online-model snapshot holds a {type(model).__name__}, not an OnlineModel")
        if schema_version is not None and model.schema_version != schema_version:
            raise OnlineModelError(f"online-model snapshot is for feature schema {model.schema_version!r}, "
                                   f"not {schema_version!r}")
        return model
