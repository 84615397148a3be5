"""The model the registry holds: an MLflow pyfunc around InferenceModel, so that
`mlflow.pyfunc.load_model(uri).predict(frame)` returns label values."""

from __future__ import annotations

import mlflow.pyfunc
import pandas as pd

from pipelines.inference import InferenceModel


class KilnPyfunc(mlflow.pyfunc.PythonModel):
    """What the registry holds: `mlflow.pyfunc.load_model(uri).predict(frame)` returns label values."""

    def load_context(self, context):
        self.model = InferenceModel(context.artifacts["checkpoint"])

    def predict(self, context, model_input: pd.DataFrame, params=None):
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        return pd.Series(self.model.predict(self.model.feature_frame(frame)), name="prediction")
