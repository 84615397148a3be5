"""The model the registry holds: an MLflow pyfunc around InferenceModel, so that
`mlflow.pyfunc.load_model(uri).predict(frame)` returns label values (or numbers, for a regression), and
`predict(frame, params={"probabilities": True})` a frame of the label and each class's probability."""

from __future__ import annotations

import mlflow.pyfunc
import pandas as pd

from pipelines.model import checkpoint
from pipelines.model.inference import InferenceModel


class KilnPyfunc(mlflow.pyfunc.PythonModel):
    """What the registry holds: `mlflow.pyfunc.load_model(uri).predict(frame)` returns label values."""

    def load_context(self, context):
        # mlflow.pyfunc.load_model runs this version's stored code (models-from-code) by design: whoever calls it
        # trusts the version, so a factory its checkpoint names is built too. Kiln's own loads never come here.
        folder = context.artifacts["checkpoint"]
        self.model = InferenceModel(folder, factory=checkpoint.read_meta(folder)["model"]["name"])

    def predict(self, context, model_input: pd.DataFrame, params=None):
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        outputs = self.model.outputs(self.model.feature_frame(frame))
        predictions = pd.Series(self.model.decode(outputs), name="prediction")
        if not (params or {}).get("probabilities"):
            return predictions
        self.model.check_probabilities("params.probabilities")
        columns = {f"probability_{label}": outputs[:, i] for i, label in enumerate(self.model.preprocessing.labels)}
        return pd.DataFrame({"prediction": predictions, **columns})
