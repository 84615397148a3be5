"""Client side: predict the rows of a CSV or parquet file with a running endpoint (`kiln predict`)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipelines.data.preprocessing import plain
from pipelines.errors import DataError, ModelNotFound

CHUNK_ROWS = 1000


def read_rows(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"--file: {path} not found")
    try:
        return pd.read_parquet(path) if path.suffix in (".parquet", ".pq") else pd.read_csv(path)
    except Exception as err:
        raise DataError(f"--file: {path} is not a readable CSV or parquet file ({type(err).__name__})") from None


def feature_matrix(
    frame: pd.DataFrame, features: list[str], path: str | Path, types: dict[str, str] | None = None
) -> list[list[Any]]:
    """Columns by name when the file has every feature (extra columns, e.g. the label, are left out);
    otherwise by position when the count matches. A missing cell goes as null (the model imputes it); a
    number column must hold numbers."""
    columns = [str(c) for c in frame.columns]
    if set(features) <= set(columns):
        frame = frame.set_axis(columns, axis=1)[features]
    elif len(columns) != len(features):
        absent = next(f for f in features if f not in columns)
        raise DataError(f"--file: {path} has no column {absent!r} (the model's features: {', '.join(features)})")
    frame = frame.set_axis(features, axis=1)
    types = types or dict.fromkeys(features, "number")
    columns_out = []
    for column in features:
        values = frame[column]
        if types.get(column) != "number":
            columns_out.append([None if pd.isna(v) else plain(v) for v in values])
            continue
        flags = values.map(lambda v: isinstance(v, bool | np.bool_))
        numeric = pd.to_numeric(values.where(~flags), errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        bad = (values.notna().to_numpy() & ~np.isfinite(numeric)).nonzero()[0]
        if len(bad):
            row, value = bad[0], plain(values.iat[bad[0]])
            problem = "value must be finite" if np.isinf(numeric[row]) else f"expected a number, got {value!r}"
            raise DataError(f"--file: {path}: row {row + 1}, column {column!r}: {problem}")
        columns_out.append([float(v) if np.isfinite(v) else None for v in numeric])
    return [list(row) for row in zip(*columns_out, strict=True)]


def sends_token_in_clear(url: str) -> bool:
    """A token would go over plain HTTP to a host that is not this machine."""
    from urllib.parse import urlsplit

    from pipelines.config import LOOPBACK
    from serving.auth import client_headers

    parts = urlsplit(url)
    return parts.scheme == "http" and (parts.hostname or "") not in LOOPBACK and bool(client_headers())


def predict_file(
    url: str, path: str | Path, *, chunk_rows: int = CHUNK_ROWS, timeout_s: float = 60, verify: bool | str = True
) -> list:
    """Every row's prediction, in file order. Chunks shrink when the endpoint says a body is too large."""
    import requests

    from serving.auth import client_headers

    url = url.rstrip("/")
    with requests.Session() as session:
        session.verify = verify
        session.headers.update(client_headers())  # $KILN_SERVE_TOKEN, for an endpoint with serve.auth: token
        info = _checked(session.get(f"{url}/model", timeout=timeout_s), url)
        rows = feature_matrix(read_rows(path), info["features"], path, info.get("types"))
        predictions: list = []
        start = 0
        while start < len(rows):
            chunk = rows[start : start + chunk_rows]
            answer = session.post(f"{url}/predict", json={"instances": chunk}, timeout=timeout_s)
            if answer.status_code == 413 and chunk_rows > 1:
                chunk_rows = max(1, chunk_rows // 2)
                continue
            if answer.status_code == 422:
                raise DataError(f"--file: {path}: {_in_file_terms(answer.json().get('detail'), start)}")
            predictions.extend(_checked(answer, url)["predictions"])
            start += len(chunk)
    return predictions


def _in_file_terms(detail: Any, first_row: int) -> str:
    """`instances[3][2] (c): ...` of a chunk becomes `row 1004, column 'c': ...` of the file."""

    def rename(match: re.Match) -> str:
        column = f", column {match.group(2)!r}" if match.group(2) else ""
        return f"row {first_row + int(match.group(1)) + 1}{column}"

    return re.sub(r"instances\[(\d+)\](?:\[\d+\] \((.+?)\))?", rename, str(detail))


def _checked(answer, url: str) -> dict:
    if answer.status_code != 200:
        raise RuntimeError(f"{url} answered {answer.status_code}: {answer.text[:300]}")
    return answer.json()


def check_serves(url: str, ref: str, *, verify: bool | str = True) -> None:
    """The endpoint at `url` answers and serves the model `ref` (NAME, NAME@ALIAS or NAME/VERSION) names."""
    import requests

    from serving.auth import client_headers

    try:
        answer = requests.get(f"{url.rstrip('/')}/model", headers=client_headers(), timeout=30, verify=verify)
        served = _checked(answer, url)
    except requests.ConnectionError:
        raise ModelNotFound(f"no endpoint answers at {url}; start one with 'kiln serve --model {ref}'") from None
    name = ref.split("@")[0].split("/")[0]
    if served["model"] != name:
        raise ModelNotFound(f"{url} serves {served['model']!r} v{served['version']}, not {name!r}")
