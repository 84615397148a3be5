import platform
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_stdlib_platform_is_not_shadowed():
    assert not (ROOT / "platform" / "__init__.py").exists()
    assert not (ROOT / "platform.py").exists()
    assert Path(platform.__file__).parent == Path(sysconfig.get_paths()["stdlib"])


def test_python_packages_are_pipelines_and_serving():
    assert (ROOT / "pipelines" / "__init__.py").exists()
    assert (ROOT / "serving" / "__init__.py").exists()


def test_torch_and_mlflow_are_pinned():
    text = (ROOT / "pyproject.toml").read_text()
    assert '"torch==2.13.0"' in text and '"mlflow==3.17.2"' in text


def test_no_two_test_files_share_a_basename():
    # pytest (rootdir-relative imports, no __init__.py in tests/) collects one module per basename: a second
    # file of the same name stops the whole suite at collection.
    from collections import Counter

    names = Counter(p.name for p in (ROOT / "tests").rglob("test_*.py"))
    assert [name for name, count in names.items() if count > 1] == []
