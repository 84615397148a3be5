"""The record of one `kiln run`: its MLflow parent run and its entry in the search ledger, kept in step.

Used as a context manager around the stages that need them: on entry the parent run is started (or, for
`--resume`, reopened) and the ledger says RUNNING; on exit both say how it ended, whatever the way out:
finished, interrupted (Ctrl-C or Tune stopping early: `--resume` continues it) or failed.
"""

from __future__ import annotations

from typing import Any

from pipelines.config import KilnConfig
from pipelines.errors import ConfigError, SearchInterrupted
from pipelines.search import ledger
from pipelines.tracking import mlflow_runs


class RunRecord:
    def __init__(self, cfg: KilnConfig, *, tags: dict[str, str], resume_from: ledger.SearchState | None = None):
        self.cfg, self.tags, self.resume_from = cfg, tags, resume_from
        self.state: ledger.SearchState | None = None
        self.held = None

    @property
    def name(self) -> str:
        """The search's name: the Tune experiment under storage.root/ray, and the parent run's name."""
        return self.state.name

    @property
    def run_id(self) -> str:
        return self.state.parent_run_id

    def __enter__(self) -> RunRecord:
        cfg = self.cfg
        name = self.resume_from.name if self.resume_from is not None else ledger.fresh_name(cfg)
        self.held = ledger.hold(cfg, name)  # of two resumes racing, the second stops here
        try:
            if self.resume_from is not None:
                now = ledger.latest(cfg)  # read again under the hold: a racing resume may have finished it
                if now is None or now.name != name or not ledger.unfinished(now):
                    raise ConfigError(
                        f"--resume: search {name} was resumed and ended by another kiln process "
                        "meanwhile; nothing left to resume"
                    )
                self.state = now.with_status(ledger.RUNNING).leased_here()
                mlflow_runs.reopen(cfg, self.state.parent_run_id)
            else:
                self.state = ledger.new(cfg, mlflow_runs.start_parent(cfg, run_name=name, tags=self.tags), name)
            ledger.save(cfg, self.state)
        except BaseException:
            self.held.release()
            raise
        return self

    def __exit__(self, kind, error, trace) -> None:
        if kind is None:
            self._end("FINISHED", ledger.FINISHED)
        elif issubclass(kind, KeyboardInterrupt):  # the search can be resumed
            self._end("KILLED", ledger.INTERRUPTED)
            raise SearchInterrupted(self.name) from None
        else:
            self._end("FAILED", ledger.FAILED)

    def _end(self, run_status: str, ledger_status: str) -> None:
        try:
            mlflow_runs.end_run(self.cfg, self.run_id, run_status)
            ledger.save(self.cfg, self.state.with_status(ledger_status))
        finally:
            self.held.release()

    def search_done(self) -> None:
        """Every trial ended: from here a failure is resumable from the finished search."""
        self.state = self.state.with_search_done()
        ledger.save(self.cfg, self.state)

    def log_metrics(self, metrics: dict[str, float]) -> None:
        mlflow_runs.log_metrics(self.cfg, self.run_id, metrics)

    def set_tags(self, tags: dict[str, str]) -> None:
        mlflow_runs.set_tags(self.cfg, self.run_id, tags)

    def log_dict(self, payload: dict[str, Any], artifact_file: str) -> None:
        mlflow_runs.log_dict(self.cfg, self.run_id, payload, artifact_file)
