"""The Ray Serve deployment: binds a Predictor to HTTP routes. Logic lives in predictor.py."""

# No `from __future__ import annotations`: FastAPI must see the body types to read JSON bodies.
from fastapi import FastAPI, HTTPException
from ray import serve

from serving.predictor import Predictor, RequestError
from serving.protocol import Health, PredictRequest, PredictResponse

APP_NAME = "kiln"
api = FastAPI(title="Kiln model endpoint", description="Predictions from a model in Kiln's MLflow registry.")


@serve.deployment(max_ongoing_requests=64)
@serve.ingress(api)
class ModelEndpoint:
    def __init__(self, tracking_uri: str, name: str, version: int):
        self.predictor = Predictor.from_registry(tracking_uri, name, version)

    @api.post("/predict", response_model=PredictResponse)
    def predict(self, request: PredictRequest) -> dict:
        try:
            return self.predictor.predict(request.instances)
        except RequestError as err:
            raise HTTPException(status_code=422, detail=str(err)) from None

    @api.get("/healthz", response_model=Health)
    def healthz(self) -> dict:
        return {"status": "ok", "model": self.predictor.name, "version": self.predictor.version}


def deploy(*, tracking_uri: str, name: str, version: int, host: str, port: int, num_cpus: float) -> str:
    """Start Serve on host:port and run the endpoint for `models:/name/version`; return its base URL."""
    serve.start(http_options={"host": host, "port": port})
    app = ModelEndpoint.options(ray_actor_options={"num_cpus": num_cpus}).bind(tracking_uri, name, version)
    serve.run(app, name=APP_NAME, route_prefix="/", blocking=False)
    return f"http://{host}:{port}"
