"""The trial actor and Train's controller never import torch (about 1 s of a trial's serial start-up each)."""

import subprocess
import sys


def test_building_and_unpickling_a_train_run_leaves_torch_unimported():
    # What the trial actor imports to build the run, and what the controller unpickles: the backend config,
    # the report callback and the loop's entry point. The workers import torch when they start the loop.
    script = """
import sys
import cloudpickle
from pipelines import trainer, tune, tune_reports
payload = cloudpickle.dumps((trainer.DDPConfig(backend="gloo"), trainer.train_loop_per_worker,
                             trainer.DDPConfig().train_func_context, trainer.DDPBackend))
cloudpickle.loads(payload)
assert "torch" not in sys.modules, "torch was imported"
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
