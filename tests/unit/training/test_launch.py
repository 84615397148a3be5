"""The trial actor and Train's controller never import torch (about 1 s of a trial's serial start-up each)."""

import subprocess
import sys


def test_building_and_unpickling_a_train_run_leaves_torch_unimported():
    # What the trial actor imports and builds, and what the controller unpickles: the backend config, the run
    # config (in a search it carries search.trial's report queue) and the loop's entry point. Only the workers
    # import torch, when they start the loop.
    script = """
import sys
import cloudpickle
from pipelines.search import trial, tuner
from pipelines.training import launch
from pipelines.config import load_config
from pipelines.data.preprocessing import Encoder, Preprocessing
cfg = load_config(None, []).for_task("classification")
run = launch.build_trainer(cfg, datasets={}, name="probe", use_gpu=False, arrays={},
                           preprocessing=Preprocessing([Encoder("a", "number"), Encoder("b", "number")], [0, 1]))
payload = cloudpickle.dumps((run.backend_config, run.run_config, launch.train_loop_per_worker,
                             run.backend_config.train_func_context, launch.DDPBackend))
cloudpickle.loads(payload)
assert "torch" not in sys.modules, "torch was imported"
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
