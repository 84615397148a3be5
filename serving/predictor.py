"""Load from the registry, validate requests, predict, decode labels. No Ray here."""

from __future__ import annotations

import base64
import binascii
import math
from typing import Any

import numpy as np
import pandas as pd

from pipelines.data import images
from pipelines.model.inference import InferenceModel
from pipelines.tracking import mlflow_store


class RequestError(ValueError):
    """A bad request body; the message names the row, field or value."""


class Predictor:
    def __init__(
        self,
        model: InferenceModel,
        *,
        name: str,
        version: int,
        max_image_pixels: int = images.DEFAULT_MAX_PIXELS,
        max_request_pixels: int = 64_000_000,
    ):
        self.model, self.name, self.version = model, name, version
        self.max_image_pixels, self.max_request_pixels = max_image_pixels, max_request_pixels
        self.image_encoders = {e.name: e for e in model.preprocessing.encoders if e.type == "image"}

    @property
    def has_images(self) -> bool:
        """Validating a request decodes its images: the routes do it off the event loop."""
        return "image" in self.model.preprocessing.types.values()

    @classmethod
    def from_registry(cls, tracking_uri: str, name: str, version: int, **options) -> Predictor:
        """Only `models:/NAME/VERSION` of this store's registry, never a path from a request; its files'
        signature checked and its checkpoint loaded without running any stored code (mlflow_store.load_verified)."""
        factory, key = options.pop("factory", None), options.pop("key", None)
        model = mlflow_store.load_verified(tracking_uri, name, version, factory=factory, key=key)
        if options.pop("gpu", False):
            model.to("cuda")
        return cls(model, name=name, version=version, **options)

    @property
    def features(self) -> list[str]:
        return self.model.features

    @property
    def labels(self) -> list[Any]:
        """Every label value the model can answer, in the label column's own type (regression: none)."""
        return self.model.preprocessing.labels

    @property
    def task(self) -> str:
        return self.model.task

    def answer(self, outputs: np.ndarray, *, probabilities: bool = False) -> dict[str, Any]:
        """The body of a /predict answer from a forward pass's outputs; `probabilities` adds each row's class
        probabilities keyed by label (a classifier's only: routes.wants_probabilities checks before the pass)."""
        body: dict[str, Any] = {"predictions": self.model.decode(outputs)}
        if probabilities:
            body["probabilities"] = self.model.probabilities(outputs)
        return {**body, "model": self.name, "version": self.version}

    def rows(self, instances: Any) -> pd.DataFrame:
        """Validate `instances` against the model's columns: a number where the column is a number, any
        scalar for a category or binary column, null for a missing cell (it is imputed, never refused)."""
        if not isinstance(instances, list) or not instances:
            raise RequestError("instances: expected a non-empty list of rows")
        width, types = len(self.features), self.model.preprocessing.types
        budget = images.PixelBudget(self.max_request_pixels)
        table: list[list[Any]] = []
        for i, row in enumerate(instances):
            if isinstance(row, dict):
                missing = [f for f in self.features if f not in row]
                unknown = [k for k in row if k not in self.features]
                if missing:
                    raise RequestError(f"instances[{i}]: missing feature {missing[0]!r} (null is a missing value)")
                if unknown:
                    raise RequestError(f"instances[{i}]: unknown feature {unknown[0]!r}")
                row = [row[f] for f in self.features]
            if not isinstance(row, list):
                noun = "numbers" if self.model.preprocessing.all_numeric else "values"
                raise RequestError(f"instances[{i}]: expected a list of {width} {noun} or an object of features")
            if len(row) != width:
                raise RequestError(f"instances[{i}]: expected {width} features, got {len(row)}")
            for j, value in enumerate(row):
                where = f"instances[{i}][{j}] ({self.features[j]})"
                if value is None:
                    continue
                if types[self.features[j]] == "image":
                    row[j] = self.image_pixels(value, self.features[j], where, budget)
                elif types[self.features[j]] == "number":
                    if isinstance(value, bool) or not isinstance(value, int | float):
                        raise RequestError(f"{where}: expected a number, got {value!r}")
                    if not math.isfinite(value):
                        raise RequestError(f"{where}: value must be finite")
                elif not isinstance(value, str | int | float | bool):
                    raise RequestError(f"{where}: expected a string, number or null, got {value!r}")
            table.append(list(row))
        return pd.DataFrame(table, columns=self.features, dtype=object)

    def image_pixels(
        self, value: Any, feature: str, where: str, budget: images.PixelBudget | None = None
    ) -> np.ndarray:
        """An image cell of a request: {"b64": "<base64 PNG, JPEG or WebP>"} (the TensorFlow Serving / KServe v1
        convention), decoded once, within serve.max_image_pixels, to the pixels the model reads. Never a path:
        that would read the server's files."""
        if not (isinstance(value, dict) and set(value) == {"b64"} and isinstance(value["b64"], str)):
            raise RequestError(
                f'{where}: expected an image as {{"b64": "<base64 PNG or JPEG>"}}, got {str(value)[:60]!r}'
            )
        try:
            raw = base64.b64decode(value["b64"], validate=True)
        except (binascii.Error, ValueError):
            raise RequestError(f"{where}: b64 is not valid base64") from None
        try:
            return self.decode_image(feature, raw, budget)
        except images.ImageError as err:
            raise RequestError(f"{where}: {err}") from None

    def decode_image(self, feature: str, raw: bytes, budget: images.PixelBudget | None = None) -> np.ndarray:
        """Image column `feature`'s bytes as its pixels, within serve.max_image_pixels and the request's budget."""
        return self.image_encoders[feature].decode_pixels(raw, max_pixels=self.max_image_pixels, budget=budget)

    def predict(self, instances: Any, *, probabilities: bool = False) -> dict[str, Any]:
        return self.answer(self.model.outputs(self.rows(instances)), probabilities=probabilities)


def alias_version(tracking_uri: str, name: str, alias: str) -> int:
    """The version `models:/NAME@ALIAS` points at in this store's registry."""
    return int(mlflow_store.client(tracking_uri).get_model_version_by_alias(name, alias).version)


def predict_batches(items: list[tuple[Predictor, np.ndarray]], *, max_rows: int = 10_000) -> list[np.ndarray]:
    """Many validated requests, one forward pass per model among them (during a version switch, two): each
    request's outputs (class probabilities, or regression values), which `Predictor.answer` turns into labels."""
    results: list[np.ndarray | None] = [None] * len(items)
    groups: dict[int, list[int]] = {}
    for i, (predictor, _) in enumerate(items):
        groups.setdefault(id(predictor), []).append(i)
    for indices in groups.values():
        predictor = items[indices[0]][0]
        parts = [items[i][1] for i in indices]
        rows = parts[0] if len(parts) == 1 else join(parts, predictor)
        # At most max_rows per forward pass: a merged batch of many large requests stays bounded in memory.
        predictions = np.concatenate(
            [predictor.model.outputs(rows[start : start + max_rows]) for start in range(0, len(rows), max_rows)]
        )
        start = 0
        for i, part in zip(indices, parts, strict=True):
            results[i] = predictions[start : start + len(part)]
            start += len(part)
    return results


def join(parts: list[pd.DataFrame | np.ndarray], predictor: Predictor) -> pd.DataFrame | np.ndarray:
    """Validated requests' rows as one batch: frames (the Kiln protocol) or float matrices (v2's tensor)."""
    if all(isinstance(p, np.ndarray) for p in parts):
        return np.concatenate(parts)
    frames = [p if isinstance(p, pd.DataFrame) else pd.DataFrame(p, columns=predictor.features) for p in parts]
    return pd.concat(frames, ignore_index=True)
