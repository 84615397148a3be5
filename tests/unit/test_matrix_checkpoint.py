"""A checkpoint saved when every input travelled as one float32 matrix (word ids and standardised pixels as floats,
before typed batches: commit 1b0ea3d) still loads, and answers as it did then: its weights' names did not change,
and the pixel statistics it standardised with in preprocessing are what its CNN standardises with now."""

import base64
import json
from pathlib import Path

import numpy as np
import pandas as pd

from pipelines.model.inference import InferenceModel

SAVED = Path(__file__).parent.parent / "fixtures" / "matrix_checkpoint"  # number, binary, one-hot and embedded
# categories, a bag-encoded text with its wide path, 8x8 RGB images (some missing); and its answers on 8 rows


def saved_rows() -> tuple[pd.DataFrame, np.ndarray]:
    saved = json.loads((SAVED / "rows.json").read_text())
    rows = pd.DataFrame(saved["rows"])
    rows["photo"] = [base64.b64decode(v) if isinstance(v, str) else None for v in rows["photo"]]
    return rows, np.array(saved["probabilities"])


def test_a_checkpoint_of_the_matrix_layout_answers_as_it_did():
    model = InferenceModel(SAVED)
    rows, answered = saved_rows()
    assert rows["photo"].isna().any() and rows["photo"].notna().any()
    logs = np.log(model.outputs(rows))  # log probabilities: the answers are near 0 and 1
    np.testing.assert_allclose(logs, np.log(answered), atol=0.05)  # a missing image: the mean pixel, rounded
    present = rows["photo"].notna().to_numpy()
    np.testing.assert_allclose(logs[present], np.log(answered[present]), rtol=1e-4, atol=1e-4)
