"""The text baseline (TF-IDF + logistic or ridge regression, baseline.py) as JSON and plain arrays, and its
predictions without scikit-learn: nothing stored is a pickle, and loading reads strings and numbers only.

What is kept is what scikit-learn fitted: each text column's vocabulary and idf (`TfidfVectorizer` with word 1-2
grams, sublinear tf, l2 rows), the number columns' medians and scale, the category columns' levels (one-hot,
unseen levels ignored), and the linear model's coefficients. The prediction repeats scikit-learn's steps: lower
case, the `(?u)\\b\\w\\w+\\b` tokens, their word pairs, 1 + log(count) times idf, l2-normalised per column, then
the coefficients. A row costs its tokens, however large the vocabulary.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

FORMAT = 1
TOKEN = re.compile(r"(?u)\b\w\w+\b")  # TfidfVectorizer's default token_pattern
MISSING_LEVEL = "<missing>"  # a category cell's level when missing, as baseline.as_text writes it


def export(columns, model, types: dict[str, str]) -> tuple[dict, dict[str, np.ndarray]]:
    """A fitted ColumnTransformer (baseline.linear_columns') and its linear model as (JSON-able layout, named
    arrays)."""
    texts, arrays = [], {}
    numbers = categories = None
    for name, transformer, column in columns.transformers_:
        if name.startswith("tfidf_"):
            vocabulary = sorted(transformer.vocabulary_, key=transformer.vocabulary_.get)
            texts.append({"column": column, "terms": vocabulary, "ngrams": list(transformer.ngram_range)})
            arrays[f"idf_{len(texts) - 1}"] = np.asarray(transformer.idf_, np.float64)
        elif name == "numbers":
            imputer, scaler = transformer.steps[0][1], transformer.steps[1][1]
            numbers = list(column)
            arrays["medians"] = np.asarray(imputer.statistics_, np.float64)
            arrays["means"] = np.asarray(scaler.mean_, np.float64)
            arrays["scales"] = np.asarray(scaler.scale_, np.float64)
        elif name == "categories":
            levels = [[str(v) for v in found] for found in transformer.categories_]
            categories = {"columns": list(column), "levels": levels}
    arrays["coef"] = np.atleast_2d(np.asarray(model.coef_, np.float64))
    arrays["intercept"] = np.atleast_1d(np.asarray(model.intercept_, np.float64))
    classes = getattr(model, "classes_", None)
    layout = {
        "format": FORMAT,
        "texts": texts,
        "numbers": numbers,
        "categories": categories,
        "types": types,
        "classes": [int(c) for c in classes] if classes is not None else None,
    }
    return layout, arrays


def save(folder: Path, layout: dict, arrays: dict[str, np.ndarray]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "linear.json").write_text(json.dumps(layout))
    np.savez(folder / "linear.npz", **arrays)


@dataclass(frozen=True)
class Linear:
    layout: dict
    arrays: dict[str, np.ndarray]

    @classmethod
    def load(cls, folder: Path) -> Linear:
        layout = json.loads((folder / "linear.json").read_text())
        with np.load(folder / "linear.npz", allow_pickle=False) as stored:
            arrays = {name: stored[name] for name in stored.files}
        model = cls(layout, arrays)
        model.check()
        return model

    def check(self) -> None:
        """The layout and arrays agree: the coefficients span exactly the columns the layout makes."""
        if self.layout.get("format") != FORMAT:
            raise ValueError(f"the linear baseline is of format {self.layout.get('format')}, not {FORMAT}")
        for i, text in enumerate(self.layout["texts"]):
            if len(self.arrays[f"idf_{i}"]) != len(text["terms"]):
                raise ValueError(f"the linear baseline's idf for {text['column']!r} does not match its terms")
        if self.arrays["coef"].shape[1] != self.width or len(self.arrays["intercept"]) != len(self.arrays["coef"]):
            spans = self.arrays["coef"].shape[1]
            raise ValueError(f"the linear baseline's coefficients span {spans} columns, not {self.width}")

    @cached_property
    def term_index(self) -> list[dict[str, int]]:
        """Each text column's term -> coefficient column, built once (a request costs its tokens only)."""
        return [{term: j for j, term in enumerate(text["terms"])} for text in self.layout["texts"]]

    @cached_property
    def level_index(self) -> list[dict[str, int]]:
        return [{v: j for j, v in enumerate(levels)} for levels in (self.layout["categories"] or {}).get("levels", [])]

    @property
    def width(self) -> int:
        texts = sum(len(t["terms"]) for t in self.layout["texts"])
        numbers = len(self.layout["numbers"] or [])
        categories = sum(len(v) for v in (self.layout["categories"] or {}).get("levels", []))
        return texts + numbers + categories

    def decision(self, frame: pd.DataFrame) -> np.ndarray:
        """[rows, outputs]: the linear model's raw outputs for the rows of `frame` (raw columns)."""
        from pipelines.data.preprocessing import level

        coef, out = self.arrays["coef"], np.tile(self.arrays["intercept"], (len(frame), 1))
        start = 0
        for i, text in enumerate(self.layout["texts"]):
            idf, index = self.arrays[f"idf_{i}"], self.term_index[i]
            block = coef[:, start : start + len(idf)]
            for row, value in enumerate(frame[text["column"]].tolist()):
                counts = Counter(t for t in grams(value, *text["ngrams"]) if t in index)
                if not counts:
                    continue
                at = np.array([index[t] for t in counts])
                weights = np.array([1.0 + math.log(c) for c in counts.values()]) * idf[at]
                out[row] += block[:, at] @ (weights / np.linalg.norm(weights))
            start += len(idf)
        if self.layout["numbers"]:
            names = self.layout["numbers"]
            values = frame[names].apply(pd.to_numeric, errors="coerce").to_numpy(np.float64)
            values = np.where(np.isnan(values), self.arrays["medians"], values)
            out += ((values - self.arrays["means"]) / self.arrays["scales"]) @ coef[:, start : start + len(names)].T
            start += len(names)
        if self.layout["categories"]:
            for column, position in zip(self.layout["categories"]["columns"], self.level_index, strict=True):
                for row, value in enumerate(frame[column].tolist()):
                    j = position.get(level(value) or MISSING_LEVEL)
                    if j is not None:
                        out[row] += coef[:, start + j]
                start += len(position)
        return out

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        from pipelines.model.trees import probabilities

        return probabilities(self.decision(frame))

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        return self.decision(frame)[:, 0]


def grams(value, low: int, high: int) -> list[str]:
    """TfidfVectorizer's word n-grams of one cell (a missing cell is the empty text, as the baseline fills it)."""
    from pipelines.data.text import is_missing

    text = "" if is_missing(value) else str(value)
    tokens = TOKEN.findall(text.lower())
    return [" ".join(tokens[i : i + n]) for n in range(low, high + 1) for i in range(len(tokens) - n + 1)]
