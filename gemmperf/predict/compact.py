"""Tree ensembles as plain arrays: what a model bundle stores, and a fast predictor built on them.

A fitted scikit-learn tree is exported in depth-first preorder, so a split node's left child is
the next node and only the right child needs storing. Per node: the split feature (-1 for a leaf)
and the right child; per split node a threshold; per leaf a value. Loading never executes code:
the arrays are checked (bounds, tree shape) and then either handed to scikit-learn's Cython
``Tree`` (fast) or walked in numpy (fallback, and the reference the tests compare against).

Thresholds are stored as float32, rounded *down*: scikit-learn compares float32 inputs with
``x <= threshold``; for a float32 ``x`` that is the same test as ``x <= round_down_f32(threshold)``
because no float32 lies strictly between the two, so predictions are bit-identical.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pandas as pd

from gemmperf.errors import DataFormatError

_LEAF = -1
#: From this many (tree, row) pairs on, trees are evaluated on a thread pool.
_THREAD_MIN_CELLS = 64_000
_CPUS = os.cpu_count() or 1
#: From this many rows on, rows equal on the features a forest reads are evaluated once.
_DISTINCT_MIN_ROWS = 1024


@dataclass(frozen=True)
class CompactForest:
    """Concatenated preorder trees. ``tree_offsets[t]:tree_offsets[t+1]`` are tree t's nodes."""

    n_features: int
    tree_offsets: np.ndarray   # int64, n_trees + 1
    feature: np.ndarray        # int16 per node, -1 at leaves
    right: np.ndarray          # int32 per node, right child index within its tree (-1 at leaves)
    threshold: np.ndarray      # float32 per split node, in node order
    value: np.ndarray          # float32 per leaf, in node order

    @property
    def n_trees(self) -> int:
        return len(self.tree_offsets) - 1

    @property
    def n_nodes(self) -> int:
        return len(self.feature)

    # -- construction -------------------------------------------------------------------------

    @classmethod
    def from_sklearn(cls, estimators: Sequence[object], n_features: int) -> CompactForest:
        """Export fitted scikit-learn regression trees (``DecisionTreeRegressor``/``ExtraTree``)."""
        parts = [_preorder(est.tree_) for est in estimators]  # type: ignore[attr-defined]
        offsets = np.zeros(len(parts) + 1, dtype=np.int64)
        offsets[1:] = np.cumsum([len(p[0]) for p in parts])
        return cls(
            n_features=n_features,
            tree_offsets=offsets,
            feature=np.concatenate([p[0] for p in parts]).astype(np.int16),
            right=np.concatenate([p[1] for p in parts]).astype(np.int32),
            threshold=np.concatenate([p[2] for p in parts]).astype(np.float32),
            value=np.concatenate([p[3] for p in parts]).astype(np.float32),
        )

    @classmethod
    def concatenate(cls, forests: Sequence[CompactForest]) -> CompactForest:
        """One forest holding the trees of ``forests`` in order (same feature count)."""
        if len({f.n_features for f in forests}) != 1:
            raise ValueError("forests to concatenate must read the same features")
        starts = np.cumsum([0] + [f.n_nodes for f in forests[:-1]])
        return cls(
            n_features=forests[0].n_features,
            tree_offsets=np.concatenate([[0], *(f.tree_offsets[1:] + start
                                                for f, start in zip(forests, starts,
                                                                    strict=True))]),
            feature=np.concatenate([f.feature for f in forests]),
            right=np.concatenate([f.right for f in forests]),
            threshold=np.concatenate([f.threshold for f in forests]),
            value=np.concatenate([f.value for f in forests]),
        )

    def to_arrays(self, prefix: str) -> dict[str, np.ndarray]:
        """The arrays a bundle stores, keyed ``prefix + name``."""
        return {
            prefix + "tree_offsets": self.tree_offsets,
            prefix + "feature": self.feature,
            prefix + "right": self.right,
            prefix + "threshold": self.threshold,
            prefix + "value": self.value,
        }

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], prefix: str,
                    n_features: int) -> CompactForest:
        """Rebuild from :meth:`to_arrays` output, validating everything a predictor indexes with."""
        try:
            forest = cls(
                n_features=int(n_features),
                tree_offsets=np.asarray(arrays[prefix + "tree_offsets"], dtype=np.int64),
                feature=np.asarray(arrays[prefix + "feature"], dtype=np.int16),
                right=np.asarray(arrays[prefix + "right"], dtype=np.int32),
                threshold=np.asarray(arrays[prefix + "threshold"], dtype=np.float32),
                value=np.asarray(arrays[prefix + "value"], dtype=np.float32),
            )
        except KeyError as exc:
            raise DataFormatError(f"model bundle lacks array {exc.args[0]!r}") from None
        forest.validate()
        return forest

    def validate(self) -> None:
        """Raise DataFormatError unless the arrays form valid binary trees in preorder."""
        off, feat, right = self.tree_offsets, self.feature, self.right
        split = feat != _LEAF
        if off.ndim != 1 or len(off) < 2 or off[0] != 0 or off[-1] != len(feat) \
                or np.any(np.diff(off) < 1):
            raise DataFormatError("model bundle: corrupt tree offsets")
        if len(right) != len(feat) or len(self.threshold) != int(split.sum()) \
                or len(self.value) != len(feat) - int(split.sum()):
            raise DataFormatError("model bundle: tree arrays disagree in length")
        if np.any(feat[split] < 0) or np.any(feat >= self.n_features) or np.any(feat < _LEAF):
            raise DataFormatError("model bundle: a split names a feature out of range")
        sizes = np.repeat(np.diff(off), np.diff(off))
        local = np.arange(len(feat)) - np.repeat(off[:-1], np.diff(off))
        # Preorder: right child after the left subtree, inside the tree; leaves have none.
        if np.any(split & ((right <= local + 1) | (right >= sizes))) \
                or np.any(~split & (right != _LEAF)):
            raise DataFormatError("model bundle: a child index points outside its tree")
        if not (np.all(np.isfinite(self.threshold)) and np.all(np.isfinite(self.value))):
            raise DataFormatError("model bundle: non-finite threshold or leaf value")

    # -- prediction ---------------------------------------------------------------------------

    def predict_trees(self, x: np.ndarray) -> np.ndarray:
        """Per-tree predictions, shape (n_trees, n_rows); ``x`` is (n_rows, n_features).

        Trees read only the features they split on: where those take few distinct value
        combinations over many rows (a power ensemble learnt on clock sweeps, asked about a
        tile space), each combination is evaluated once (exact: same inputs, same leaves)."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise ValueError(f"expected {self.n_features} features, got shape {x.shape}")
        distinct = self._distinct_rows(x)
        if distinct is not None:
            first, inverse = distinct
            return self._predict_rows(x[first])[:, inverse]
        return self._predict_rows(x)

    def _predict_rows(self, x: np.ndarray) -> np.ndarray:
        trees = self._sklearn_trees()
        if trees is not None:
            def one(tree: object) -> np.ndarray:
                return tree.predict(x).reshape(len(x), -1)[:, 0]  # type: ignore[attr-defined]

            if x.shape[0] * self.n_trees >= _THREAD_MIN_CELLS and _CPUS > 1:
                # scikit-learn's tree traversal releases the GIL: threads scale on cores.
                with ThreadPoolExecutor(max_workers=min(_CPUS, len(trees))) as pool:
                    return np.stack(list(pool.map(one, trees)))
            return np.stack([one(t) for t in trees])
        return self.predict_trees_numpy(x)

    def used_features(self) -> np.ndarray:
        """Indices of the features some split reads (sorted; computed once)."""
        cached = self.__dict__.get("_used")
        if cached is None:
            cached = np.unique(self.feature[self.feature != _LEAF]).astype(np.int64)
            object.__setattr__(self, "_used", cached)
        return cached

    def _distinct_rows(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """(first row of each distinct combination of the used features, row -> combination),
        or None where deduplicating would not pay (few rows, most features used, most rows
        distinct)."""
        used = self.used_features()
        if len(x) < _DISTINCT_MIN_ROWS or 2 * len(used) > self.n_features:
            return None
        bits = np.ascontiguousarray(x[:, used]).view(np.uint32)
        # Group by a hash of the rows, then check that every row equals its group's first row:
        # a hash collision only costs the saving, never a wrong prediction.
        codes, uniques = pd.factorize(_row_hash(bits))
        if 2 * len(uniques) > len(x):
            return None
        # factorize numbers groups in order of first appearance: a group's first row is where
        # the running maximum of the codes steps up.
        running = np.maximum.accumulate(codes)
        first = np.flatnonzero(np.concatenate([[True], running[1:] > running[:-1]]))
        if not np.array_equal(bits[first][codes], bits):
            return None
        return first, codes

    def predict_trees_numpy(self, x: np.ndarray) -> np.ndarray:
        """Traversal in numpy: all trees and rows advance one level per step. The reference
        the tests compare the scikit-learn path against, and the faster one for a few rows
        (a step costs about what one scikit-learn tree call does, whatever the tree count)."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        split, node_thr, node_value, right_global = self._walk_arrays()
        n_rows = x.shape[0]
        node = np.repeat(self.tree_offsets[:-1, None], n_rows, axis=1)   # (trees, rows)
        rows = np.broadcast_to(np.arange(n_rows), node.shape)
        active = split[node]
        while active.any():
            f = self.feature[node[active]].astype(np.int64)
            go_left = x[rows[active], f] <= node_thr[node[active]]
            node[active] = np.where(go_left, node[active] + 1, right_global[node[active]])
            active = split[node]
        return node_value[node]

    def _walk_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Per-node arrays of the numpy walk (split mask, threshold, value, global right child),
        built once."""
        cached = self.__dict__.get("_walk")
        if cached is None:
            split = self.feature != _LEAF
            node_value = np.zeros(self.n_nodes, dtype=np.float32)
            node_value[~split] = self.value
            node_thr = np.zeros(self.n_nodes, dtype=np.float32)
            node_thr[split] = self.threshold
            starts = np.repeat(self.tree_offsets[:-1], np.diff(self.tree_offsets))
            right_global = np.where(split, self.right + starts, -1).astype(np.int32)
            cached = (split, node_thr, node_value, right_global)
            object.__setattr__(self, "_walk", cached)
        return cached

    def _sklearn_trees(self) -> list[object] | None:
        cached = self.__dict__.get("_trees")
        if cached is None:
            cached = _build_sklearn_trees(self)
            object.__setattr__(self, "_trees", cached if cached is not None else False)
        return cached or None


def _row_hash(bits: np.ndarray) -> np.ndarray:
    """FNV-1a style 64-bit hash of each row of a uint32 matrix (uint64 arithmetic wraps)."""
    key = np.full(len(bits), 0xCBF29CE484222325, dtype=np.uint64)
    for column in bits.T:
        key = (key ^ column.astype(np.uint64)) * np.uint64(0x100000001B3)
    return key


def _preorder(tree: object) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(feature, right, split thresholds, leaf values) of a sklearn ``Tree`` in preorder."""
    left, right = tree.children_left, tree.children_right  # type: ignore[attr-defined]
    feature, threshold = tree.feature, tree.threshold  # type: ignore[attr-defined]
    value = tree.value[:, 0, 0]  # type: ignore[attr-defined]
    order: list[int] = []
    stack = [0]
    while stack:
        node = stack.pop()
        order.append(node)
        if left[node] != _LEAF:
            stack.append(right[node])
            stack.append(left[node])
    order_arr = np.array(order, dtype=np.int64)
    new_index = np.empty(len(order_arr), dtype=np.int64)
    new_index[order_arr] = np.arange(len(order_arr))
    is_split = left[order_arr] != _LEAF
    feat = np.where(is_split, feature[order_arr], _LEAF)
    new_right = np.where(is_split, new_index[np.where(is_split, right[order_arr], 0)], _LEAF)
    thr = _round_down_f32(threshold[order_arr][is_split])
    return feat, new_right, thr, value[order_arr][~is_split]


def _round_down_f32(values: np.ndarray) -> np.ndarray:
    """Largest float32 <= each float64 value (see the module doc)."""
    f32 = values.astype(np.float32)
    too_big = f32.astype(np.float64) > values
    f32[too_big] = np.nextafter(f32[too_big], np.float32(-np.inf))
    return f32


def _build_sklearn_trees(forest: CompactForest) -> list[object] | None:
    """scikit-learn ``Tree`` objects with these nodes (its Cython predict), or None if this
    scikit-learn's node layout is not the one expected (the numpy path takes over)."""
    try:
        from sklearn.tree._tree import NODE_DTYPE, Tree
    except ImportError:  # pragma: no cover - sklearn is a dependency
        return None
    needed = {"left_child", "right_child", "feature", "threshold"}
    if not needed <= set(NODE_DTYPE.names or ()):
        return None
    trees = []
    split_all = forest.feature != _LEAF
    thr_pos = np.cumsum(split_all) - 1
    leaf_pos = np.cumsum(~split_all) - 1
    for t in range(forest.n_trees):
        lo, hi = int(forest.tree_offsets[t]), int(forest.tree_offsets[t + 1])
        feat = forest.feature[lo:hi].astype(np.int64)
        split = feat != _LEAF
        n = hi - lo
        nodes = np.zeros(n, dtype=NODE_DTYPE)
        nodes["left_child"] = np.where(split, np.arange(n) + 1, _LEAF)
        nodes["right_child"] = np.where(split, forest.right[lo:hi], _LEAF)
        nodes["feature"] = np.where(split, feat, -2)   # sklearn's TREE_UNDEFINED
        thr = np.full(n, -2.0)
        thr[split] = forest.threshold[thr_pos[lo:hi][split]]
        nodes["threshold"] = thr
        for name in ("n_node_samples", "weighted_n_node_samples"):
            if name in NODE_DTYPE.names:
                nodes[name] = 1
        values = np.zeros((n, 1, 1), dtype=np.float64)
        values[~split, 0, 0] = forest.value[leaf_pos[lo:hi][~split]]
        depth = _depth(nodes["left_child"], nodes["right_child"])
        tree = Tree(forest.n_features, np.array([1], dtype=np.intp), 1)
        try:
            tree.__setstate__({"max_depth": depth, "node_count": n, "nodes": nodes,
                               "values": values})
        except (TypeError, ValueError, KeyError):
            return None
        trees.append(tree)
    return trees


def _depth(left: np.ndarray, right: np.ndarray) -> int:
    """Depth of a tree, walking it one level per step."""
    depth, frontier = 0, np.array([0])
    while True:
        frontier = frontier[left[frontier] != _LEAF]
        if not len(frontier):
            return depth
        frontier = np.concatenate([left[frontier], right[frontier]])
        depth += 1
