"""A fitted HistGradientBoosting model as plain arrays, and its predictions: the baseline's trees kept in a
version without a pickle. Loading reads numbers only (`np.load(..., allow_pickle=False)`), so a stored file can be
wrong but cannot run code; check() keeps every index inside what it indexes.

The arrays are scikit-learn's own (`_predictors[i][k].nodes`, the categorical bitsets, `_baseline_prediction`),
every tree's nodes concatenated with child indices made global. A batch of rows goes through scikit-learn's
compiled walk (`TreePredictor`, one call per tree) rebuilt from the checked arrays. A handful of rows, where a
call per tree costs more than the walk, goes through numpy: all trees at once, a level per step over [rows,
trees] node indices. The input is the matrix the trees were fitted on: numbers as floats with NaN for missing, a
categorical column as its category codes (NaN or negative: missing), exactly as scikit-learn's
`_predict_from_raw_data` reads it, including its rule that a category unseen in training follows the missing side.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

FORMAT = 1  # the arrays' layout; a file of another layout is refused
MISSING_CODE = 256  # a category code past the bitsets' 256: missing, negative or unseen
COMPILED_FROM_ROWS = 64  # fewer rows: the numpy walk (one pass for all trees) beats a compiled call per tree
THREADS_FROM_ROWS = 2048  # fewer rows: one thread (starting more costs more than it saves)


def export(estimator) -> dict[str, np.ndarray]:
    """A fitted HistGradientBoostingClassifier or Regressor (fitted on a matrix, categorical columns as codes) as
    named arrays."""
    predictors = [tree for iteration in estimator._predictors for tree in iteration]
    per_iteration = estimator.n_trees_per_iteration_
    sizes = np.array([len(tree.nodes) for tree in predictors])
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    bitset_offsets = np.concatenate([[0], np.cumsum([len(t.raw_left_cat_bitsets) for t in predictors])[:-1]])
    nodes = np.concatenate([tree.nodes for tree in predictors])
    tree_of = np.repeat(np.arange(len(predictors)), sizes)
    known, feature_map = estimator._bin_mapper.make_known_categories_bitsets()
    left_bitsets = [t.raw_left_cat_bitsets for t in predictors if len(t.raw_left_cat_bitsets)]
    classes = getattr(estimator, "classes_", None)
    categorical = np.zeros(estimator.n_features_in_, dtype=bool)
    levels: list[np.ndarray] = []
    if estimator._preprocessor is not None:  # scikit-learn's own OrdinalEncoder, categorical columns first
        categorical = np.asarray(estimator.is_categorical_, dtype=bool)
        for found in estimator._preprocessor.named_transformers_["encoder"].categories_:
            found = np.asarray(found, dtype=np.float64)
            levels.append(found[~np.isnan(found)])
    return {
        "format": np.array([FORMAT]),
        "order": np.concatenate([np.flatnonzero(categorical), np.flatnonzero(~categorical)]).astype(np.int64),
        "levels": np.concatenate(levels) if levels else np.zeros(0),
        "level_counts": np.array([len(found) for found in levels], dtype=np.int64),
        "feature": nodes["feature_idx"].astype(np.int64),
        "threshold": nodes["num_threshold"].astype(np.float64),
        "missing_left": nodes["missing_go_to_left"].astype(bool),
        "left": (nodes["left"] + offsets[tree_of]).astype(np.int64),
        "right": (nodes["right"] + offsets[tree_of]).astype(np.int64),
        "leaf": nodes["is_leaf"].astype(bool),
        "value": nodes["value"].astype(np.float64),
        "categorical": nodes["is_categorical"].astype(bool),
        "bitset": (nodes["bitset_idx"] + bitset_offsets[tree_of]).astype(np.int64),
        "left_bitsets": np.concatenate(left_bitsets) if left_bitsets else np.zeros((0, 8), np.uint32),
        "known_bitsets": np.asarray(known, np.uint32).reshape(-1, 8),
        "feature_map": np.asarray(feature_map, np.int64),
        "roots": offsets.astype(np.int64),
        "output": np.arange(len(predictors), dtype=np.int64) % per_iteration,  # the raw column each tree adds to
        "baseline": np.asarray(estimator._baseline_prediction, np.float64).reshape(-1),
        "depth": np.array([int(nodes["depth"].max())]),
        "classes": np.asarray(classes if classes is not None else [], np.int64),
    }


def save(path: Path, arrays: dict[str, np.ndarray]) -> None:
    np.savez(path, **arrays)


@dataclass(frozen=True)
class Trees:
    arrays: dict[str, np.ndarray]

    @classmethod
    def load(cls, path: Path) -> Trees:
        """The arrays of `path`, checked for shape and bounds (a file's indices are never trusted to stay inside
        its own arrays); ValueError naming what is wrong."""
        with np.load(path, allow_pickle=False) as stored:
            arrays = {name: stored[name] for name in stored.files}
        check(arrays)
        return cls(arrays)

    def raw(self, x: np.ndarray) -> np.ndarray:
        """[rows, outputs]: the baseline plus every tree's leaf value, summed per output."""
        x = self.encoded(np.asarray(x, dtype=np.float64))
        if len(x) >= COMPILED_FROM_ROWS and self.compiled is not None:
            return self.compiled_raw(x)
        return self.walked_raw(x)

    def compiled_raw(self, x: np.ndarray) -> np.ndarray:
        """raw() of an encoded matrix through scikit-learn's compiled walk, a call per tree."""
        from sklearn.utils._openmp_helpers import _openmp_effective_n_threads

        predictors, known, feature_map = self.compiled
        threads = 1 if len(x) < THREADS_FROM_ROWS else _openmp_effective_n_threads()
        x = np.ascontiguousarray(x)
        out = np.tile(self.arrays["baseline"], (len(x), 1))
        for tree, column in zip(predictors, self.arrays["output"], strict=True):
            out[:, column] += tree.predict(x, known, feature_map, threads)
        return out

    @cached_property
    def compiled(self) -> tuple[list, np.ndarray, np.ndarray] | None:
        """(scikit-learn's TreePredictor per tree, the known categories' bitsets, the column -> bitset row map) as
        its walk takes them, the nodes rebuilt from the arrays (whose indices check() kept inside each tree,
        children after their parent: the compiled walk reads without bounds checks and stops only at a leaf);
        None where this scikit-learn lacks it (the numpy walk answers instead)."""
        try:
            from sklearn.ensemble._hist_gradient_boosting.common import PREDICTOR_RECORD_DTYPE
            from sklearn.ensemble._hist_gradient_boosting.predictor import TreePredictor
        except ImportError:
            return None
        a = self.arrays
        bitsets = np.ascontiguousarray(a["left_bitsets"], dtype=np.uint32)
        ends = np.append(a["roots"][1:], len(a["feature"]))
        built = []
        for root, end in zip(a["roots"], ends, strict=True):
            part = slice(root, end)
            leaf = a["leaf"][part].astype(bool)
            nodes = np.zeros(end - root, dtype=PREDICTOR_RECORD_DTYPE)
            nodes["value"], nodes["num_threshold"] = a["value"][part], a["threshold"][part]
            nodes["feature_idx"] = np.where(leaf, 0, a["feature"][part])
            nodes["missing_go_to_left"], nodes["is_leaf"] = a["missing_left"][part], leaf
            nodes["left"] = np.where(leaf, 0, a["left"][part] - root)
            nodes["right"] = np.where(leaf, 0, a["right"][part] - root)
            categorical = a["categorical"][part].astype(bool) & ~leaf
            nodes["is_categorical"], nodes["bitset_idx"] = categorical, np.where(categorical, a["bitset"][part], 0)
            built.append(TreePredictor(nodes, None, bitsets))
        known = np.ascontiguousarray(a["known_bitsets"], dtype=np.uint32)
        return built, known, np.ascontiguousarray(a["feature_map"], dtype=np.uint32)

    def walked_raw(self, x: np.ndarray) -> np.ndarray:
        """raw() of an encoded matrix in numpy, every tree a level per step."""
        a, walk = self.arrays, self.walk
        columns = x.shape[1]
        # [x | x with NaN as -inf]: a node whose missing values go left reads the second half (-inf <= any
        # threshold), the others the first (NaN <= threshold is false: right)
        both = np.concatenate([x, np.where(np.isnan(x), -np.inf, x)], axis=1).ravel()
        start = (np.arange(len(x)) * 2 * columns)[:, None]
        at = np.broadcast_to(a["roots"], (len(x), len(a["roots"]))).copy()
        for _ in range(int(a["depth"][0])):
            value = both[start + walk["column"][at]]
            right = ~(value <= walk["threshold"][at])
            if walk["table"] is not None:
                row = walk["table_row"][at]
                chosen = row >= 0
                if chosen.any():
                    code = value[chosen]
                    code = np.where(np.isfinite(code) & (code >= 0), code, MISSING_CODE).astype(np.int64)
                    right[chosen] = ~walk["table"][row[chosen], np.minimum(code, MISSING_CODE)]
            at = walk["children"][2 * at + right]
        return a["baseline"] + a["value"][at] @ walk["outputs"]

    @cached_property
    def walk(self) -> dict[str, np.ndarray | None]:
        """The node arrays arranged for raw(): a leaf is its own child (the walk can run every level without a
        mask), each node's column in [x | x with NaN as -inf] by where its missing values go, and for
        categorical nodes a table of [node, code] -> goes left, unseen and missing codes the missing way."""
        a = self.arrays
        leaf = a["leaf"].astype(bool)
        nodes = np.arange(len(leaf))
        missing_left = a["missing_left"].astype(bool)
        children = np.stack([np.where(leaf, nodes, a["left"]), np.where(leaf, nodes, a["right"])], axis=1)
        outputs = np.zeros((len(a["roots"]), len(a["baseline"])))
        outputs[np.arange(len(a["roots"])), a["output"]] = 1.0
        walk = {
            "children": children.reshape(-1),
            "column": np.where(leaf, 0, a["feature"]) + len(a["feature_map"]) * missing_left,
            "threshold": np.where(leaf, np.inf, a["threshold"]),
            "outputs": outputs,
            "table": None,
            "table_row": None,
        }
        categorical = np.flatnonzero(a["categorical"].astype(bool) & ~leaf)
        if len(categorical):
            codes = np.arange(MISSING_CODE)
            in_left = _in(a["left_bitsets"], a["bitset"][categorical][:, None], codes[None, :])
            known = _in(a["known_bitsets"], a["feature_map"][a["feature"][categorical]][:, None], codes[None, :])
            goes = missing_left[categorical][:, None]
            walk["table"] = np.concatenate([np.where(known, in_left, goes), goes], axis=1)
            walk["table_row"] = np.full(len(leaf), -1, dtype=np.int64)
            walk["table_row"][categorical] = np.arange(len(categorical))
        return walk

    def encoded(self, x: np.ndarray) -> np.ndarray:
        """The matrix as the trees read it (scikit-learn's preprocessor): categorical columns first, each value
        as its index among the training values (unseen or missing: NaN), then the numbers."""
        a = self.arrays
        out = x[:, a["order"]]
        start = 0
        for j, count in enumerate(a["level_counts"]):
            levels, start = a["levels"][start : start + count], start + count
            if count == 0:
                out[:, j] = np.nan
                continue
            at = np.clip(np.searchsorted(levels, out[:, j]), 0, count - 1)
            out[:, j] = np.where(levels[at] == out[:, j], at, np.nan)  # NaN equals nothing: missing stays missing
        return out

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return probabilities(self.raw(x))

    def predict(self, x: np.ndarray) -> np.ndarray:
        """A regressor's values (squared error: the raw output itself)."""
        return self.raw(x)[:, 0]


def probabilities(raw: np.ndarray) -> np.ndarray:
    """[rows, classes] of a classifier's raw outputs: the sigmoid of one output (two classes) or the softmax of one
    per class, as scikit-learn's log loss (trees) and logistic regression turn them into probabilities."""
    if raw.shape[1] == 1:
        positive = 1.0 / (1.0 + np.exp(-raw[:, 0]))
        return np.stack([1.0 - positive, positive], axis=1)
    raw = raw - raw.max(axis=1, keepdims=True)
    exp = np.exp(raw)
    return exp / exp.sum(axis=1, keepdims=True)


def _in(bitsets: np.ndarray, row: np.ndarray, code: np.ndarray) -> np.ndarray:
    """Whether category `code` is set in bitset `row` (8 words of 32 bits: codes 0-255)."""
    if len(bitsets) == 0:
        return np.zeros(code.shape, dtype=bool)
    word = bitsets[np.clip(row, 0, len(bitsets) - 1), np.clip(code >> 5, 0, 7)]
    return ((word >> (code & 31).astype(np.uint32)) & 1).astype(bool) & (code < 256)


NAMES = (
    "format", "feature", "threshold", "missing_left", "left", "right", "leaf", "value", "categorical", "bitset",
    "left_bitsets", "known_bitsets", "feature_map", "roots", "output", "baseline", "depth", "classes", "order",
    "levels", "level_counts",
)  # fmt: skip


def check(a: dict[str, np.ndarray]) -> None:
    """Every array present with the right shape, and every index inside what it indexes."""
    missing = [name for name in NAMES if name not in a]
    if missing:
        raise ValueError(f"the trees file lacks {', '.join(missing)}")
    if a["format"].tolist() != [FORMAT]:
        raise ValueError(f"the trees file is of format {a['format'].tolist()}, not {FORMAT}")
    indices = ("feature", "left", "right", "bitset", "roots", "output", "feature_map", "order", "level_counts")
    if any(a[name].ndim != 1 for name in {*indices, *NAMES[1:10]}):
        raise ValueError("the trees file's node arrays and indices are not one-dimensional")
    if any(a[name].dtype.kind not in "iu" for name in indices):
        raise ValueError("the trees file's indices are not whole numbers")
    nodes = len(a["feature"])
    if any(len(a[name]) != nodes for name in NAMES[1:10]):
        raise ValueError("the trees file's node arrays differ in length")
    if a["left_bitsets"].ndim != 2 or a["left_bitsets"].shape[1:] != (8,) or a["known_bitsets"].shape[1:] != (8,):
        raise ValueError("the trees file's bitsets are not rows of 8 words")
    inner = ~a["leaf"].astype(bool)
    roots = a["roots"]
    if nodes and (len(roots) == 0 or roots[0] != 0 or (np.diff(roots) <= 0).any() or roots[-1] >= nodes):
        raise ValueError("the trees file's roots point outside its nodes")
    at = np.arange(nodes)
    end = np.append(roots[1:], nodes)[np.searchsorted(roots, at, side="right") - 1] if nodes else at
    for name in ("left", "right"):  # inside the node's own tree and after it: every walk ends at a leaf
        if nodes and ((a[name][inner] <= at[inner]) | (a[name][inner] >= end[inner])).any():
            raise ValueError(f"the trees file's {name} children point outside its nodes")
    if nodes and ((a["feature"][inner] < 0) | (a["feature"][inner] >= len(a["feature_map"]))).any():
        raise ValueError("the trees file's features point outside its columns")
    split = inner & a["categorical"].astype(bool)
    known = a["feature_map"][a["feature"][split]] if split.any() else np.zeros(0, np.int64)
    if ((a["bitset"][split] < 0) | (a["bitset"][split] >= len(a["left_bitsets"]))).any() or (
        (known < 0) | (known >= len(a["known_bitsets"]))
    ).any():
        raise ValueError("the trees file's category splits point outside its bitsets")
    if len(a["output"]) != len(a["roots"]) or ((a["output"] < 0) | (a["output"] >= len(a["baseline"]))).any():
        raise ValueError("the trees file's outputs do not match its baseline")
    if not 0 <= int(a["depth"][0]) <= 10_000:
        raise ValueError("the trees file's depth is out of range")
    columns = len(a["feature_map"])
    if sorted(a["order"].tolist()) != list(range(columns)) or a["level_counts"].sum() != len(a["levels"]):
        raise ValueError("the trees file's column order or category levels do not match its columns")
    if (a["level_counts"] < 0).any() or len(a["level_counts"]) > columns:
        raise ValueError("the trees file's category levels do not match its columns")
