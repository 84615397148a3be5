"""The one way Kiln reaches an MLflow store: a client bound to its URI, and registered models loaded from it.

Nothing here sets MLflow's process-wide URIs for longer than one call (`scoped`): the driver, a replica and a
test may each talk to another store, and a subprocess must never inherit one by accident.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

URI_ENV = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")  # what mlflow.set_*_uri also write


def client(uri: str):
    """An MlflowClient of this store, for tracking and for the registry."""
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def version_folder(uri: str, name: str, version: int | str) -> str:
    """A local folder holding version VERSION of model NAME in this store."""
    import mlflow

    # Not through `models:/NAME/VERSION`: MLflow 3.17 resolves those with the process-wide registry URI
    # whatever registry_uri it is given (ModelsArtifactRepository._get_model_uri_infos).
    location = client(uri).get_model_version_download_uri(name, str(version))
    return mlflow.artifacts.download_artifacts(location, tracking_uri=uri)


def load_pyfunc(uri: str, name: str, version: int | str):
    """Version VERSION of model NAME in this store, as a pyfunc model. MLflow runs the version's stored code
    to build it: Kiln does this only for a version it just logged (registry.load_check); everything else goes
    through load_verified."""
    import mlflow

    return mlflow.pyfunc.load_model(version_folder(uri, name, version))


def load_verified(uri: str, name: str, version: int | str, *, factory: str | None = None):
    """Version VERSION of model NAME as an InferenceModel, built from its checkpoint (JSON and a weights-only
    state dict) after its files' sha256 matches the one recorded at registration: no code or pickle from the
    store runs. Raises integrity.IntegrityError naming the version otherwise. A checkpoint naming a user factory
    is built only when it is `factory` (checkpoint.trusted_factory of the config that loads it)."""
    from mlflow.models import Model

    from pipelines import integrity
    from pipelines.inference import InferenceModel

    recorded = client(uri).get_model_version(name, str(version)).tags.get(integrity.TAG)
    folder = version_folder(uri, name, version)
    if recorded is None:
        raise integrity.IntegrityError(
            f"{name} v{version} was registered without a sha256 (before Kiln recorded "
            "them); register it again with kiln run"
        )
    found = integrity.digest(folder)
    if found != recorded:
        raise integrity.IntegrityError(
            f"{name} v{version}: its files changed since registration (sha256 "
            f"{found[:12]}..., registered {recorded[:12]}...); refusing to load it"
        )
    artifacts = Model.load(folder).flavors["python_function"]["artifacts"]
    return InferenceModel(os.path.join(folder, artifacts["checkpoint"]["path"]), factory=factory)


@contextmanager
def scoped(uri: str) -> Iterator[None]:
    """MLflow's fluent API (log_model, start_run) pointed at this store for the duration, then put back."""
    import mlflow
    from mlflow.tracking import _tracking_service
    from mlflow.tracking._model_registry import utils as registry_utils

    before = {key: os.environ.get(key) for key in URI_ENV}
    # MLflow exposes no getter for "unset" (get_tracking_uri resolves a default), so read what was set.
    tracking_before = _tracking_service.utils._tracking_uri
    registry_before = registry_utils._registry_uri
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(tracking_before)
        mlflow.set_registry_uri(registry_before)
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
