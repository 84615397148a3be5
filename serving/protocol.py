"""Request and response bodies of the HTTP API (they also feed the OpenAPI docs at /docs)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class PredictRequest(BaseModel):
    instances: list[Any] = Field(
        ..., description="Rows in training feature order ([[...], ...]) or objects keyed by feature name.",
        examples=[[[0.0, 1.0, 2.0]]])


class PredictResponse(BaseModel):
    predictions: list[Any] = Field(..., description="One label per row, in the label column's own values.")
    model: str
    version: int


class Health(BaseModel):
    status: str
    model: str
    version: int
