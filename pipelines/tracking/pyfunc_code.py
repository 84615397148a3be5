"""The registered model's code, logged as MLflow models-from-code: this file is copied into each version, and
`mlflow.pyfunc.load_model` runs it to build the model, so no pickle is stored. The model itself is Kiln's
installed class (pipelines.tracking.pyfunc.KilnPyfunc); Kiln's own endpoint never runs this stored copy: it loads
the checkpoint directly after checking the version's sha256 (mlflow_store.load_verified)."""

import mlflow

from pipelines.tracking.pyfunc import KilnPyfunc

mlflow.models.set_model(KilnPyfunc())
