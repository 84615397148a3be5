"""The one way Kiln reaches an MLflow store: a client bound to its URI, and registered models loaded from it.

Nothing here sets MLflow's process-wide URIs for longer than one call (`scoped`): the driver, a replica and a
test may each talk to another store, and a subprocess must never inherit one by accident.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

URI_ENV = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")  # what mlflow.set_*_uri also write


def client(uri: str):
    """An MlflowClient of this store, for tracking and for the registry."""
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def version_folder(uri: str, name: str, version: int | str, *, into: str | None = None) -> str:
    """A local folder holding version VERSION of model NAME in this store: a copy under `into`, or (None) where
    MLflow keeps it (for a local store, the store's own files)."""
    import mlflow

    # Not through `models:/NAME/VERSION`: MLflow 3.17 resolves those with the process-wide registry URI
    # whatever registry_uri it is given (ModelsArtifactRepository._get_model_uri_infos).
    location = client(uri).get_model_version_download_uri(name, str(version))
    return mlflow.artifacts.download_artifacts(location, tracking_uri=uri, dst_path=into)


def verified_copy(uri: str, name: str, version: int | str, into: str, *, key: bytes | None = None) -> str:
    """Version VERSION of model NAME copied under `into` (a folder only this process writes), once the copy's
    files match the signature recorded at registration (integrity.TAG under the signing key): what is loaded
    afterwards is the copy that was checked, never a second read of the store. Raises integrity.IntegrityError
    naming the version otherwise."""
    return _signed_copy(uri, name, version, into, key=key)[0]


def _signed_copy(uri: str, name: str, version: int | str, into: str, *, key: bytes | None) -> tuple[str, str]:
    """verified_copy's (folder, the signature its files matched)."""
    from pipelines.tracking import integrity

    tags = client(uri).get_model_version(name, str(version)).tags
    recorded = tags.get(integrity.TAG)
    if recorded is None:
        legacy = integrity.LEGACY_TAG in tags
        before = " (an unkeyed sha256, which whoever can write the store can reset)" if legacy else ""
        raise integrity.IntegrityError(
            f"{name} v{version} was registered without a signature{before}; register it again with kiln run"
        )
    folder = version_folder(uri, name, version, into=into)
    found = integrity.digest(folder, integrity.signing_key() if key is None else key)
    if found != recorded:
        raise integrity.IntegrityError(
            f"{name} v{version}: its files changed since registration, or it was signed with another key "
            f"({integrity.KEY_ENV} names a team's key); refusing to load it"
        )
    return folder, recorded


def checkpoint_of(folder: str) -> str:
    """The checkpoint's folder inside a version's folder, as its MLmodel names it."""
    from mlflow.models import Model

    return os.path.join(folder, Model.load(folder).flavors["python_function"]["artifacts"]["checkpoint"]["path"])


def load_pyfunc(uri: str, name: str, version: int | str):
    """Version VERSION of model NAME in this store, as a pyfunc model, the way a user's mlflow.pyfunc.load_model
    builds it (running the version's stored code), from a copy whose signature was checked first."""
    import tempfile

    import mlflow

    with tempfile.TemporaryDirectory(prefix="kiln-version-") as into:
        return mlflow.pyfunc.load_model(verified_copy(uri, name, version, into))


def load_verified(uri: str, name: str, version: int | str, *, factory: str | None = None, key: bytes | None = None):
    """Version VERSION of model NAME as an InferenceModel, built from its checkpoint (JSON and a weights-only
    state dict) in a copy whose signature was checked (verified_copy): no code or pickle from the store runs.
    A checkpoint naming a user factory is built only when it is `factory` (checkpoint.trusted_factory of the
    config that loads it). `key`: the signing key (a replica gets it from the process that deployed it)."""
    import tempfile

    from pipelines.model.inference import InferenceModel

    with tempfile.TemporaryDirectory(prefix="kiln-version-") as into:
        return InferenceModel(checkpoint_of(verified_copy(uri, name, version, into, key=key)), factory=factory)


@dataclass(frozen=True)
class Shipped:
    """A verified version's files in memory, for the processes of one job that load it without reaching the store
    (kiln score's actors): no MLflow client, no second download. Loading checks the signature again."""

    name: str
    version: int
    files: dict[str, bytes]  # relative path -> bytes, as integrity.digest frames them
    signature: str
    checkpoint: str  # the checkpoint's folder, relative


def ship(uri: str, name: str, version: int | str, *, key: bytes, factory: str | None = None):
    """(Version VERSION of model NAME as an InferenceModel, its files as Shipped for other processes), from one
    verified copy: one download, one signature check (IntegrityError if it changed)."""
    import tempfile

    from pipelines.model.inference import InferenceModel
    from pipelines.tracking import integrity

    with tempfile.TemporaryDirectory(prefix="kiln-version-") as into:
        folder, signature = _signed_copy(uri, name, version, into, key=key)
        checkpoint = checkpoint_of(folder)
        files = {relative: path.read_bytes() for relative, path in integrity.files(Path(folder))}
        shipped = Shipped(name, int(version), files, signature, os.path.relpath(checkpoint, folder))
        return InferenceModel(checkpoint, factory=factory), shipped


def load_shipped(shipped: Shipped, *, key: bytes, factory: str | None = None):
    """A shipped version as an InferenceModel, built from its files written under a fresh folder once their
    signature under `key` matches (IntegrityError otherwise); a path leaving that folder is refused."""
    import tempfile

    from pipelines.model.inference import InferenceModel
    from pipelines.tracking import integrity

    with tempfile.TemporaryDirectory(prefix="kiln-version-") as into:
        root = Path(into).resolve()
        for relative, data in shipped.files.items():
            path = (root / relative).resolve()
            if not path.is_relative_to(root) or path == root:
                raise integrity.IntegrityError(f"{shipped.name} v{shipped.version}: a file outside its folder")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        if not integrity.matches_folder(root, key, shipped.signature):
            raise integrity.IntegrityError(
                f"{shipped.name} v{shipped.version}: its files changed on the way to this process; refusing to load it"
            )
        return InferenceModel(str(root / shipped.checkpoint), factory=factory)


def load_checked(uri: str, name: str, version: int | str, *, factory: str | None = None):
    """load_verified for a command about to start: a version whose files changed is bad input (DataError, exit 2)."""
    from pipelines.errors import DataError
    from pipelines.tracking import integrity

    try:
        return load_verified(uri, name, version, factory=factory)
    except integrity.IntegrityError as err:
        raise DataError(str(err)) from None


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
