import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: shared helpers such as tiny_model

from tiny_model import train_tiny  # noqa: E402


@pytest.fixture
def trained(tmp_path):
    return tmp_path, train_tiny(tmp_path)
