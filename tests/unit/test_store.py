"""Talking to an MLflow store leaves no process-wide trace: a later subprocess or test never inherits it."""

import os

import mlflow

from pipelines.config import load_config
from pipelines.tracking import mlflow_runs, mlflow_store


def test_the_client_factory_sets_nothing_process_wide(tmp_path):
    before = mlflow.get_tracking_uri(), {k: os.environ.get(k) for k in mlflow_store.URI_ENV}
    cfg = load_config(None, [f"storage.root={tmp_path}"])
    mlflow_runs.client(cfg).search_experiments()
    assert (mlflow.get_tracking_uri(), {k: os.environ.get(k) for k in mlflow_store.URI_ENV}) == before


def test_scoped_points_the_fluent_api_at_the_store_and_puts_everything_back(tmp_path):
    before = mlflow.get_tracking_uri(), mlflow.get_registry_uri(), {k: os.environ.get(k) for k in mlflow_store.URI_ENV}
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with mlflow_store.scoped(uri):
        assert mlflow.get_tracking_uri() == uri == mlflow.get_registry_uri()
        assert os.environ["MLFLOW_TRACKING_URI"] == uri
    after = mlflow.get_tracking_uri(), mlflow.get_registry_uri(), {k: os.environ.get(k) for k in mlflow_store.URI_ENV}
    assert after == before
