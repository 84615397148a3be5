"""The path versions registered before the move to `pipelines/tracking/` import their model from: their stored
`python_model.py` says `from pipelines.pyfunc_model import KilnPyfunc`, so this name stays and points at the one
class."""

from pipelines.tracking.pyfunc import KilnPyfunc

__all__ = ["KilnPyfunc"]
