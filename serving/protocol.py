"""Request and response bodies of the HTTP API (they also feed the OpenAPI docs at /docs)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class PredictRequest(BaseModel):
    # a field the endpoint does not know is a 422 naming it, never silently dropped: `"probabilities": true` beside
    # `instances` (instead of inside `parameters`) would otherwise answer without the probabilities asked for
    model_config = ConfigDict(extra="forbid")

    instances: list[Any] = Field(
        ...,
        description="Rows in training feature order ([[...], ...]) or objects keyed by feature name.",
        examples=[[[0.0, 1.0, 2.0]]],
    )
    parameters: dict[str, Any] | None = Field(
        None,
        description='{"probabilities": true} adds each row\'s class probabilities (classification).',
        examples=[{"probabilities": True}],
    )


class PredictResponse(BaseModel):
    predictions: list[Any] = Field(
        ...,
        description="One answer per row: a label in the label column's own "
        "values (classification) or a number (regression).",
    )
    probabilities: list[dict[str, float]] | None = Field(
        None, description="Asked with parameters.probabilities: each row's probability per label."
    )
    model: str
    version: int


class ModelInfo(BaseModel):
    model: str
    version: int
    features: list[str] = Field(..., description="Feature names in training order: the columns of a row.")
    task: str = Field(..., description="classification or regression.")
    types: dict[str, str] = Field(..., description="Each feature's type: number, category or binary.")
    labels: list[Any] = Field(..., description="Every label value the model can answer (regression: none).")
    candidate: str = Field(
        "network", description="Which model registry.candidates registered: network, baseline or blend."
    )
    blend_weight: float | None = Field(None, description="A blend's weight on the network's predictions.")


class Health(BaseModel):
    status: str
    model: str
    version: int


class ErrorResponse(BaseModel):
    detail: str | list[dict[str, Any]] = Field(
        ..., description="What is wrong, naming the row, feature or limit (a list when the body is not the schema)."
    )


# Open Inference Protocol (KServe v2). Names and shapes follow the spec; see serving/v2.py for what is accepted.


class V2Error(BaseModel):
    error: str = Field(..., description="What is wrong, naming the input, row, feature or limit.")


class V2TensorParameters(BaseModel):
    binary_data_size: int | None = Field(
        None, description="Triton binary extension: this tensor's bytes follow the JSON header (little-endian)."
    )


class V2InputTensor(BaseModel):
    name: str = Field(
        ...,
        description='"input-0" (any name) for one [N, num_features] tensor, or a feature name '
        "for one [N] tensor per feature.",
    )
    shape: list[int] = Field(..., examples=[[1, 4]])
    datatype: Literal["FP64", "FP32", "INT64", "INT32", "BYTES"] = Field(
        ..., description="BYTES for a category or binary column's strings (one 1-D tensor per feature)."
    )
    data: list[Any] | None = Field(
        None, description="Row-major values, flat or nested; null is a missing cell.", examples=[[10.0, 9.5, 11.2, 8.9]]
    )
    parameters: V2TensorParameters | None = None


class V2RequestedOutput(BaseModel):
    name: Literal["predictions"]
    parameters: dict[str, Any] | None = Field(None, examples=[{"binary_data": False}])


class V2InferRequest(BaseModel):
    id: str | None = None
    parameters: dict[str, Any] | None = Field(None, examples=[{"binary_data_output": False}])
    inputs: list[V2InputTensor] = Field(..., min_length=1)
    outputs: list[V2RequestedOutput] | None = None


class V2OutputTensor(BaseModel):
    name: str = Field(..., examples=["predictions"])
    shape: list[int]
    datatype: str = Field(..., description="BYTES for string labels, INT64 for integer labels.")
    data: list[Any] | None = None
    parameters: V2TensorParameters | None = None


class V2InferResponse(BaseModel):
    model_name: str
    model_version: str
    id: str | None = None
    outputs: list[V2OutputTensor]


class V2TensorMetadata(BaseModel):
    name: str
    datatype: str
    shape: list[int]


class V2ModelMetadata(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[V2TensorMetadata]
    outputs: list[V2TensorMetadata]


class V2ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


class V2Ready(BaseModel):
    live: bool | None = None
    ready: bool | None = None
