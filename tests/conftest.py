import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# mlflow.set_tracking_uri/set_registry_uri also write these variables, and every later subprocess (a user's
# fresh Python, `kiln ...`) would inherit a store some earlier test pointed at.
MLFLOW_ENV = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
SUITE_ENV = {key: os.environ.get(key) for key in MLFLOW_ENV}


@pytest.fixture(autouse=True)
def _mlflow_env_as_the_suite_started():
    yield
    for key, value in SUITE_ENV.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture
def root() -> Path:
    return ROOT
