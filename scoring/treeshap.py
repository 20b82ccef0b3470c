"""Exact TreeSHAP for shallow XGBoost trees through per-tree lookup tables.

Path-dependent TreeSHAP (what XGBoost's `pred_contribs=True` computes) gives each tree's share of a
row's prediction as a function of one thing only: which way the row goes at each of the tree's split
nodes. A tree of depth <= 3 has at most 7 split nodes, so at most 128 such patterns. We compute the
contribution vector of every pattern once, when the model is loaded, with the leaf-wise Shapley
formula; scoring a row is then: compare its values with all thresholds, pack the directions into a
pattern number per tree, and add up the looked-up rows. The numbers are the same as XGBoost's (up
to float32 rounding; tests/scoring/test_treeshap.py compares them), at a fraction of the cost.

Leaf-wise formula: for a leaf with value v whose path splits on the distinct features P (a feature
split twice on the path counts once, its conditions ANDed and its cover fractions multiplied), with
o_j = 1 if the row follows the path at every node on feature j and z_j the product of cover
fractions of those edges, feature i in P receives
    v * sum over S subset of P-{i} of |S|!(|P|-|S|-1)!/|P|! * prod_{j in S} o_j * prod_{j not in S, j != i} z_j * (o_i - z_i).
Split semantics follow XGBoost: numeric `x < threshold` goes left, missing goes the default way,
a categorical value listed in the node's category set goes right (unlisted or invalid goes left).
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import xgboost as xgb
from scipy import sparse

MAX_SPLITS = 7  # 2**7 = 128 patterns per tree
_SLOT = 8  # bytes reserved per tree in the bit matrix (one uint64 per tree)
_GATHER = np.uint64(0x0102040810204080)


class TooDeep(ValueError):
    """A tree has more split nodes than the lookup tables are built for."""


@dataclass
class _Split:
    tree: int
    node: int
    feature: int
    threshold: float
    default_left: bool
    categories: frozenset[int] | None  # None: numeric split


def _base_margin(model: dict[str, Any]) -> float:
    raw = model["learner"]["learner_model_param"]["base_score"]
    value = float(str(raw).strip("[]").split(",")[0])
    objective = model["learner"]["objective"]["name"]
    if objective in ("binary:logistic", "reg:logistic"):
        return math.log(value / (1 - value))
    return value


class TreeExplainer:
    """Exact path-dependent TreeSHAP via per-tree pattern tables (trees with at most 7 split nodes)."""

    def __init__(self, booster: xgb.Booster, n_features: int) -> None:
        model = json.loads(booster.save_raw("json"))
        trees = model["learner"]["gradient_booster"]["model"]["trees"]
        self.n_features = n_features
        self.base_margin = _base_margin(model)
        splits: list[_Split] = []
        tables: list[np.ndarray] = []
        outputs: list[np.ndarray] = []
        self.expected = self.base_margin
        for t, tree in enumerate(trees):
            table, tree_splits, expected = self._tree_table(t, tree)
            tables.append(table)
            # A tree's output for a pattern is its expected value plus the pattern's contributions.
            outputs.append(expected + table.sum(axis=1))
            splits.extend(tree_splits)
            self.expected += expected
        self.outputs = np.concatenate(outputs) if outputs else np.zeros(1)
        self.n_trees = len(trees)
        offsets = np.cumsum([0] + [tab.shape[0] for tab in tables[:-1]])
        self.offsets = offsets.astype(np.int64)
        # One table for all trees: row offsets[t] + pattern holds tree t's contribution vector.
        self.table = np.vstack(tables) if tables else np.zeros((1, n_features))
        # Group splits by feature so each feature column is compared with all its thresholds at once.
        self._numeric: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = {}
        self._categorical: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        by_feature: dict[int, list[tuple[int, int, float, bool]]] = {}
        cat_by_feature: dict[int, list[tuple[int, bool, frozenset[int]]]] = {}
        # Each split owns one column of a (rows x trees*8) bit matrix: column tree*8 + bit.
        self._column = np.array([s.tree * _SLOT + s.node for s in splits], dtype=np.int64)
        for s_index, s in enumerate(splits):
            if s.categories is None:
                by_feature.setdefault(s.feature, []).append((s_index, s.tree, s.threshold, s.default_left))
            else:
                cat_by_feature.setdefault(s.feature, []).append((s_index, s.default_left, s.categories))
        for feature, citems in cat_by_feature.items():
            # Membership matrix: row = category code, column = split; the last row stands for any
            # code outside the table (unseen or invalid), which is never in a set and so goes left.
            top = max((max(c) for _, _, c in citems if c), default=0)
            member = np.zeros((top + 2, len(citems)), dtype=bool)
            for j, (_, _, cats) in enumerate(citems):
                member[sorted(cats), j] = True
            idx = self._column[np.array([i for i, _, _ in citems], dtype=np.int64)]
            dleft = np.array([d for _, d, _ in citems], dtype=bool)
            self._categorical[feature] = (idx, dleft, member)
        for feature, items in by_feature.items():
            idx = self._column[np.array([i for i, _, _, _ in items], dtype=np.int64)]
            thr = np.array([th for _, _, th, _ in items], dtype=np.float32)
            dleft = np.array([d for _, _, _, d in items], dtype=bool)
            self._numeric[feature] = (idx, thr, dleft, np.array([tr for _, tr, _, _ in items]))
        self.n_splits = len(splits)

    # ---- building the tables ---------------------------------------------------------------------

    def _tree_table(self, t: int, tree: dict[str, Any]) -> tuple[np.ndarray, list[_Split], float]:
        left = tree["left_children"]
        right = tree["right_children"]
        cover = tree["sum_hessian"]
        value = tree["split_conditions"]
        cat_of: dict[int, frozenset[int]] = {}
        for node, seg, size in zip(tree["categories_nodes"], tree["categories_segments"], tree["categories_sizes"]):
            cat_of[node] = frozenset(int(c) for c in tree["categories"][seg: seg + size])
        internal = [n for n in range(len(left)) if left[n] != -1]
        if len(internal) > MAX_SPLITS:
            raise TooDeep(f"tree {t} has {len(internal)} splits; lookup tables support up to {MAX_SPLITS}")
        bit_of = {node: k for k, node in enumerate(internal)}
        splits = [
            _Split(t, bit_of[n], int(tree["split_indices"][n]), float(value[n]), bool(tree["default_left"][n]),
                   cat_of.get(n) if tree["split_type"][n] == 1 else None)
            for n in internal
        ]
        n_patterns = 1 << len(internal)
        patterns = np.arange(n_patterns)
        # goes_left[k] for every pattern: bit k set means "left" at split k.
        goes_left = [((patterns >> k) & 1).astype(bool) for k in range(len(internal))]
        table = np.zeros((n_patterns, self.n_features))
        expected = 0.0
        # Walk every root-to-leaf path.
        stack: list[tuple[int, list[tuple[int, int, bool, float]]]] = [(0, [])]
        while stack:
            node, path = stack.pop()
            if left[node] == -1:
                leaf_value = float(value[node])
                z_all = 1.0
                for _, _, _, frac in path:
                    z_all *= frac
                expected += leaf_value * z_all
                self._add_leaf(table, path, leaf_value, goes_left, tree)
                continue
            feature = int(tree["split_indices"][node])
            for child, is_left in ((left[node], True), (right[node], False)):
                frac = cover[child] / cover[node] if cover[node] > 0 else 0.0
                stack.append((child, path + [(bit_of[node], feature, is_left, frac)]))
        return table, splits, expected

    @staticmethod
    def _add_leaf(table: np.ndarray, path: list[tuple[int, int, bool, float]], v: float,
                  goes_left: list[np.ndarray], tree: dict[str, Any]) -> None:
        n_patterns = table.shape[0]
        features: dict[int, tuple[np.ndarray, float]] = {}
        for bit, feature, is_left, frac in path:
            follows = goes_left[bit] if is_left else ~goes_left[bit]
            if feature in features:
                o, z = features[feature]
                features[feature] = (o & follows, z * frac)
            else:
                features[feature] = (follows.copy(), frac)
        names = list(features)
        m = len(names)
        if m == 0:
            return
        o_arr = {f: features[f][0].astype(float) for f in names}
        z_arr = {f: features[f][1] for f in names}
        for i in names:
            others = [f for f in names if f != i]
            total = np.zeros(n_patterns)
            for size in range(len(others) + 1):
                weight = math.factorial(size) * math.factorial(m - size - 1) / math.factorial(m)
                for subset in itertools.combinations(others, size):
                    term = np.full(n_patterns, weight)
                    for f in others:
                        term = term * (o_arr[f] if f in subset else z_arr[f])
                    total += term
            table[:, i] += v * total * (o_arr[i] - z_arr[i])

    # ---- scoring -----------------------------------------------------------------------------------

    def patterns(self, X: np.ndarray) -> np.ndarray:
        """(rows x trees) global table row of each tree's decision pattern."""
        X = np.asarray(X, dtype=np.float32)
        n = X.shape[0]
        bits = np.zeros((n, self.n_trees * _SLOT), dtype=np.uint8)
        for feature, (idx, thr, dleft, _) in self._numeric.items():
            col = X[:, feature][:, None]
            with np.errstate(invalid="ignore"):
                left = col < thr[None, :]
            missing = np.isnan(col)
            if missing.any():
                left = np.where(missing, dleft[None, :], left)
            bits[:, idx] = left
        for feature, (idx, dleft, member) in self._categorical.items():
            col = X[:, feature]
            missing = np.isnan(col)
            codes = np.where(missing, -1, col).astype(np.int64)
            invalid = (codes < 0) | (codes >= member.shape[0] - 1) | (codes != np.where(missing, -1, col))
            codes = np.where(invalid, member.shape[0] - 1, codes)
            left = ~member[codes]  # listed categories go right
            if missing.any():
                left = np.where(missing[:, None], dleft[None, :], left)
            bits[:, idx] = left
        # Pattern number per tree: bit k = "goes left at split k". Each tree's 8 bytes of 0/1 are read
        # as one little-endian uint64 and multiplied by a constant that gathers byte k into bit k of
        # the top byte (faster than np.packbits along a short axis).
        words = bits.view("<u8")
        with np.errstate(over="ignore"):
            pattern = (words * _GATHER) >> np.uint64(56)
        return pattern.astype(np.int64) + self.offsets[None, :]

    def margin(self, X: np.ndarray, chunk: int = 1024) -> np.ndarray:
        """Raw margins: base margin plus each tree's output for the row's pattern (no attributions)."""
        X = np.asarray(X, dtype=np.float32)
        out = np.empty(X.shape[0])
        for start in range(0, X.shape[0], chunk):
            out[start: start + chunk] = self.base_margin + self.outputs[self.patterns(X[start: start + chunk])].sum(axis=1)
        return out

    def shap_values(self, X: np.ndarray, chunk: int = 1024) -> np.ndarray:
        """Per-feature contributions plus the bias as the last column, like `pred_contribs=True`."""
        X = np.asarray(X, dtype=np.float32)
        out = np.empty((X.shape[0], self.n_features + 1))
        out[:, -1] = self.expected
        k = self.n_trees
        for start in range(0, X.shape[0], chunk):
            rows = self.patterns(X[start: start + chunk])
            n = rows.shape[0]
            # Sum of the selected table rows as a sparse (rows x table) 0/1 matrix times the table:
            # it never materialises the (rows x trees x features) gather.
            pick = sparse.csr_matrix((np.ones(n * k), rows.ravel(), np.arange(0, n * k + 1, k)),
                                     shape=(n, self.table.shape[0]))
            out[start: start + chunk, :-1] = pick @ self.table
        return out
