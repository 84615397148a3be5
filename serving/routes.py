"""The HTTP routes: Kiln's /predict and the Open Inference Protocol (KServe v2) under /v2. Built per replica.

Each request takes the replica's current Predictor once and uses it to the end, so a version switch never
mixes two models in one answer, and the version in the response is the one that predicted.
"""

# No `from __future__ import annotations`: FastAPI reads the routes' annotations at runtime.
import asyncio
import functools
from typing import Any, Protocol

import numpy as np
from fastapi import FastAPI, Request, Response
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse

from serving import auth, protocol, v2
from serving.limits import LOOPBACK_HOSTS, VERSION_HEADER, BodyTooLarge, Guard, error_body
from serving.metrics import Metrics
from serving.predictor import Predictor, RequestError

KILN_VERSION = "0.1.0"
INLINE_VALIDATION_ROWS = 256
"""Larger requests are validated in a thread, so one big body does not stall the event loop."""


class Endpoint(Protocol):
    predictor: Predictor
    metrics: Metrics
    source: str

    async def forward(self, item: tuple[Predictor, np.ndarray]) -> list[Any]: ...


PARAMETERS = frozenset({"probabilities"})  # what /predict's `parameters` may hold


def wants_probabilities(parameters: dict[str, Any] | None, predictor: Predictor) -> bool:
    """`"parameters": {"probabilities": true}` asks for each row's class probabilities beside its label (a
    RequestError, before any work, when the value is not a bool, the model is a regression, or a parameter is
    not one the endpoint knows: a misspelt one would otherwise be ignored without a word)."""
    unknown = sorted(set(parameters or {}) - PARAMETERS)
    if unknown:
        known = ", ".join(sorted(PARAMETERS))
        raise RequestError(f"parameters.{unknown[0]}: not a parameter of /predict (it takes: {known})")
    value = (parameters or {}).get("probabilities", False)
    if not isinstance(value, bool):
        raise RequestError(f"parameters.probabilities: expected true or false, got {value!r}")
    if value:
        try:
            predictor.model.check_probabilities("parameters.probabilities")
        except ValueError as err:
            raise RequestError(str(err)) from None
    return value


def build_api(
    endpoint: Endpoint,
    *,
    max_body_bytes: int,
    timeout_s: float,
    token_sha256: str | None = None,
    max_rows: int = 10_000,
    hosts: frozenset[str] | None = LOOPBACK_HOSTS,
) -> FastAPI:
    """The endpoint's routes; with `token_sha256` (serve.auth: token) every route but the health checks needs
    the bearer token. `hosts`: the Host names it answers (limits.answered_hosts; None: any)."""
    api = FastAPI(
        title="Kiln model endpoint",
        version=KILN_VERSION,
        description="Predictions from a model in Kiln's MLflow registry: Kiln's `/predict` and the "
        "Open Inference Protocol (KServe v2) under `/v2`.",
    )
    api.add_middleware(
        Guard,
        max_body_bytes=max_body_bytes,
        timeout_s=timeout_s,
        metrics=endpoint.metrics,
        version=lambda: endpoint.predictor.version,
        routes=api.routes,
        hosts=hosts,
    )
    if token_sha256:

        @api.middleware("http")  # added last: runs first, before a body is read
        async def bearer_token(request: Request, call_next):
            path = request.url.path.removeprefix(request.scope.get("root_path", "")) or "/"
            if path in auth.OPEN_PATHS or auth.authorized(request.headers.get("authorization"), token_sha256):
                return await call_next(request)
            return JSONResponse(
                {"detail": "missing or wrong bearer token: send Authorization: Bearer <token>"},
                401,
                headers={"WWW-Authenticate": "Bearer"},
            )

    def too_many(count: int) -> str:
        return f"{count} rows in one request; the limit is {max_rows} (serve.max_rows): send them in parts"

    @api.exception_handler(BodyTooLarge)
    async def too_large(request: Request, err: BodyTooLarge) -> Response:
        return Response(error_body(request.url.path, 413, err.detail), 413, media_type="application/json")

    def versioned(content: Any, predictor: Predictor, status: int = 200) -> JSONResponse:
        return JSONResponse(content, status, headers={VERSION_HEADER: str(predictor.version)})

    kiln_errors = {413: {"model": protocol.ErrorResponse}, 422: {"model": protocol.ErrorResponse}}

    @api.post("/predict", response_model=protocol.PredictResponse, responses=kiln_errors, tags=["kiln"])
    async def predict(body: protocol.PredictRequest) -> Response:
        """Rows in training feature order, or objects keyed by feature name; labels in their own values."""
        predictor = endpoint.predictor
        if len(body.instances) > max_rows:
            return versioned({"detail": too_many(len(body.instances))}, predictor, 413)
        try:
            if len(body.instances) > INLINE_VALIDATION_ROWS or predictor.has_images:  # never block the loop
                rows = await asyncio.to_thread(predictor.rows, body.instances)
            else:
                rows = predictor.rows(body.instances)
            probabilities = wants_probabilities(body.parameters, predictor)
        except RequestError as err:
            return versioned({"detail": str(err)}, predictor, 422)
        outputs = await endpoint.forward((predictor, rows))
        return versioned(predictor.answer(outputs, probabilities=probabilities), predictor)

    @api.get("/healthz", response_model=protocol.Health, tags=["kiln"])
    async def healthz() -> Response:
        predictor = endpoint.predictor
        return versioned({"status": "ok", "model": predictor.name, "version": predictor.version}, predictor)

    @api.get("/model", response_model=protocol.ModelInfo, tags=["kiln"])
    async def model_info() -> Response:
        """What a row must hold (feature names in order) and what the model answers."""
        predictor = endpoint.predictor
        return versioned(
            {
                "model": predictor.name,
                "version": predictor.version,
                "task": predictor.task,
                "features": predictor.features,
                "types": predictor.model.preprocessing.types,
                "labels": predictor.labels,
                "candidate": predictor.model.candidate,
                "blend_weight": predictor.model.blend_weight,
            },
            predictor,
        )

    @api.get("/metrics", response_class=Response, tags=["operations"])
    async def metrics() -> Response:
        """Prometheus text format: requests by route, status and model version; latency; batch sizes."""
        return Response(endpoint.metrics.render(), media_type=Metrics.content_type)

    v2_errors = {400: {"model": protocol.V2Error}, 404: {"model": protocol.V2Error}, 413: {"model": protocol.V2Error}}

    def v2_error(status: int, message: str, predictor: Predictor) -> JSONResponse:
        return versioned(v2.error(message), predictor, status)

    def not_served(name: str, version: str | None, predictor: Predictor) -> JSONResponse | None:
        if name != predictor.name:
            return v2_error(404, f"unknown model {name!r}; this endpoint serves {predictor.name!r}", predictor)
        if version is not None and version != str(predictor.version):
            return v2_error(
                404,
                f"version {version!r} of {name!r} is not loaded; this endpoint serves version "
                f"{predictor.version} ({endpoint.source})",
                predictor,
            )
        return None

    @api.get("/v2", response_model=protocol.V2ServerMetadata, tags=["v2"])
    async def server_metadata() -> dict:
        return v2.server_metadata(KILN_VERSION)

    @api.get("/v2/health/live", response_model=protocol.V2Ready, response_model_exclude_none=True, tags=["v2"])
    async def live() -> dict:
        return {"live": True}

    @api.get("/v2/health/ready", response_model=protocol.V2Ready, response_model_exclude_none=True, tags=["v2"])
    async def ready() -> dict:
        return {"ready": True}  # a replica takes traffic only once its model has loaded

    async def metadata(name: str, version: str | None = None) -> Response:
        predictor = endpoint.predictor
        problem = not_served(name, version, predictor)
        return problem or versioned(
            v2.model_metadata(
                predictor.name,
                predictor.version,
                predictor.features,
                predictor.labels,
                regression=predictor.model.preprocessing.regression,
                types=predictor.model.preprocessing.types,
            ),
            predictor,
        )

    async def model_ready(name: str, version: str | None = None) -> Response:
        predictor = endpoint.predictor
        return not_served(name, version, predictor) or versioned({"name": name, "ready": True}, predictor)

    async def infer(request: Request, name: str, version: str | None = None) -> Response:
        predictor = endpoint.predictor
        problem = not_served(name, version, predictor)
        if problem:
            return problem
        encoding = request.headers.get("content-encoding", "identity")
        if encoding != "identity":
            return v2_error(
                400, f"Content-Encoding {encoding!r} is not supported; send the body uncompressed", predictor
            )
        body = await request.body()
        try:
            parse = functools.partial(
                v2.parse_infer,
                body,
                predictor.features,
                header_length=request.headers.get(v2.HEADER_LENGTH),
                types=predictor.model.preprocessing.types,
                max_image_pixels=predictor.max_image_pixels,
                max_request_pixels=predictor.max_request_pixels,
                decode_image=predictor.decode_image,
            )
            # Images decode while they are checked, and a large body parses for a while: off the event loop,
            # so health checks and other requests go on meanwhile.
            parsed = await asyncio.to_thread(parse) if predictor.has_images or len(body) > 1 << 20 else parse()
        except v2.ProtocolError as err:
            return v2_error(400, str(err), predictor)
        if len(parsed.rows) > max_rows:
            return v2_error(413, too_many(len(parsed.rows)), predictor)
        outputs = await endpoint.forward((predictor, parsed.rows))
        content, header_length = v2.infer_response(
            name=predictor.name,
            version=predictor.version,
            predictions=predictor.model.decode(outputs),
            datatype=v2.output_datatype(predictor.labels, regression=predictor.model.preprocessing.regression),
            request_id=parsed.request_id,
            binary=parsed.binary_output,
        )
        headers = {VERSION_HEADER: str(predictor.version)}
        if header_length is None:
            return Response(content, media_type="application/json", headers=headers)
        headers[v2.HEADER_LENGTH] = str(header_length)
        return Response(content, media_type="application/octet-stream", headers=headers)

    infer_doc = dict(
        response_model=protocol.V2InferResponse,
        responses=v2_errors,
        tags=["v2"],
        summary="Infer (JSON, or Triton's binary tensor extension)",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/V2InferRequest"}}},
            }
        },
    )
    metadata_doc = dict(response_model=protocol.V2ModelMetadata, responses=v2_errors, tags=["v2"])

    @api.get("/v2/models/{name}", **metadata_doc)
    async def model_metadata(name: str) -> Response:
        return await metadata(name)

    @api.get("/v2/models/{name}/versions/{version}", **metadata_doc)
    async def version_metadata(name: str, version: str) -> Response:
        return await metadata(name, version)

    @api.get("/v2/models/{name}/ready", responses=v2_errors, tags=["v2"])
    async def is_model_ready(name: str) -> Response:
        return await model_ready(name)

    @api.get("/v2/models/{name}/versions/{version}/ready", responses=v2_errors, tags=["v2"])
    async def is_version_ready(name: str, version: str) -> Response:
        return await model_ready(name, version)

    @api.post("/v2/models/{name}/infer", **infer_doc)
    async def model_infer(name: str, request: Request) -> Response:
        return await infer(request, name)

    @api.post("/v2/models/{name}/versions/{version}/infer", **infer_doc)
    async def version_infer(name: str, version: str, request: Request) -> Response:
        return await infer(request, name, version)

    api.openapi = lambda: _openapi(api)
    return api


def _openapi(api: FastAPI) -> dict:
    """FastAPI's schema plus the v2 request body, which the infer routes read raw (binary extension)."""
    if api.openapi_schema is None:
        schema = get_openapi(title=api.title, version=api.version, description=api.description, routes=api.routes)
        request = protocol.V2InferRequest.model_json_schema(ref_template="#/components/schemas/{model}")
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components.update(request.pop("$defs", {}))
        components["V2InferRequest"] = request
        api.openapi_schema = schema
    return api.openapi_schema
