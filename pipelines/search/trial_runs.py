"""Every trial as a nested MLflow run of the search's parent run: a Tune callback on the driver.

SQLite allows one writer at a time, so trial metrics reach MLflow from the driver only, as Tune sees them.
"""

from __future__ import annotations

import math

from pipelines.config import KilnConfig
from pipelines.tracking import mlflow_runs


def trial_callback(cfg: KilnConfig, parent_run_id: str, tags: dict[str, str] | None = None, inputs: list = ()):
    """A Tune callback (runs in the driver) that mirrors each trial into a nested MLflow run; `inputs` are the
    MLflow dataset inputs (train, val) each trial's run records."""
    from ray.tune import Callback

    class MlflowTrials(Callback):
        def __init__(self):
            self.runs: dict[str, str] = {}
            self.tagged: set[str] = set()
            self.logged: dict[str, int] = {}  # trial id -> last epoch written

        def __getstate__(self):  # Tune pickles callbacks with its experiment state
            return {"runs": self.runs, "tagged": self.tagged, "logged": self.logged}

        def __setstate__(self, state):
            self.__init__()
            self.__dict__.update(state)

        def on_trial_start(self, iteration, trials, trial, **info):
            if trial.trial_id in self.runs:
                return
            existing = mlflow_runs.find_trial_run(cfg, parent_run_id, trial.trial_id)  # a resumed search
            if existing:
                self.runs[trial.trial_id] = existing
                # What the store holds, not what an older snapshot of this callback remembers: a restarted
                # trial reports its restored epoch again, and that epoch may or may not have been written.
                self.logged[trial.trial_id] = mlflow_runs.last_epoch_logged(cfg, existing)
                mlflow_runs.client(cfg).update_run(existing, status="RUNNING")
                return
            trial_cfg = cfg.with_sample(trial.config)
            run = mlflow_runs.client(cfg).create_run(
                mlflow_runs.experiment_id(cfg),
                run_name=f"trial-{trial.trial_id}",
                tags={
                    "mlflow.parentRunId": parent_run_id,
                    "kiln.kind": "trial",
                    "kiln.trial_id": trial.trial_id,
                    **(tags or {}),
                },
            )
            self.runs[trial.trial_id] = run.info.run_id
            mlflow_client = mlflow_runs.client(cfg)
            for key, value in mlflow_runs.trial_params(trial_cfg).items():
                mlflow_client.log_param(run.info.run_id, key, value)
            mlflow_runs.log_inputs(cfg, run.info.run_id, list(inputs))

        def on_trial_result(self, iteration, trials, trial, result, **info):
            run_id = self.runs.get(trial.trial_id)
            if run_id is None:
                return
            if result.get("node_ids") and trial.trial_id not in self.tagged:
                mlflow_runs.set_tags(cfg, run_id, {"node_ids": str(result["node_ids"])})
                self.tagged.add(trial.trial_id)
            step = int(result.get("epoch", result.get("training_iteration", 0)))
            if step <= self.logged.get(trial.trial_id, 0):
                return  # an epoch reported again after a restore, or recomputed after a worker failure
            # tune.metric first: MLflow's compare page plots the first metric a run logged against the parameters
            metrics = {
                k: result[k]
                for k in (cfg.tune.metric, *mlflow_runs.LOGGED_METRICS)
                if isinstance(result.get(k), int | float) and math.isfinite(result[k])
            }
            mlflow_runs.log_metrics(cfg, run_id, metrics, step=step)
            self.logged[trial.trial_id] = step

        def on_trial_complete(self, iteration, trials, trial, **info):
            self._end(trial, "FINISHED")

        def on_trial_error(self, iteration, trials, trial, **info):
            self._end(trial, "FAILED")

        def on_experiment_end(self, trials, **info):
            # A trial the sampler had made when the driver was killed, but that Tune's saved state missed, is not
            # restored by --resume (a model-based sampler's trials have new ids): its run would stay RUNNING.
            mlflow_runs.end_lost_trial_runs(cfg, parent_run_id, {t.trial_id for t in trials})

        def _end(self, trial, status):
            run_id = self.runs.get(trial.trial_id)
            if run_id:
                mlflow_runs.set_tags(cfg, run_id, {"kiln.epochs_run": str(trial.last_result.get("epoch", 0))})
                mlflow_runs.end_run(cfg, run_id, status)

    return MlflowTrials()
