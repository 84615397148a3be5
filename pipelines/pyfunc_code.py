"""The registered model's code, logged as MLflow models-from-code: this file is copied into each version, and
`mlflow.pyfunc.load_model` runs it to build the model, so no pickle is stored. The model itself is Kiln's
installed class (pipelines.pyfunc_model.KilnPyfunc); Kiln's own endpoint never runs this stored copy: it loads
the checkpoint directly after checking the version's sha256 (store.load_verified)."""

import mlflow

from pipelines.pyfunc_model import KilnPyfunc

mlflow.models.set_model(KilnPyfunc())
