"""The plan against the run: `kiln plan`'s epoch time for this config, beside the epochs a search measured."""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from pipelines.config import KilnConfig
from pipelines.plan import cost, hardware, shapes


@dataclass(frozen=True)
class EpochCheck:
    predicted_s: float

    @classmethod
    def predict(cls, cfg: KilnConfig, *, input_dim: int, num_classes: int, train_rows: int,
                slots=()) -> EpochCheck:
        """The recorded local profile's prediction (no calibration: it would cost the run seconds), at the mean
        of the search's model shapes, as kiln plan prices the search."""
        profile = hardware.load_profile("local")
        epochs = [cost.shape_epoch(cfg, sample, profile, input_dim=input_dim, num_classes=num_classes,
                                   train_rows=train_rows, slots=slots)["epoch_time_s"]
                  for sample in shapes.shape_samples(cfg)]
        return cls(sum(epochs) / len(epochs))

    @property
    def tags(self) -> dict[str, str]:
        return {"kiln.plan.predicted_epoch_time_s": f"{self.predicted_s:.4f}"}

    def compare(self, epoch_times_s: list[float]) -> tuple[dict[str, float], str]:
        """The metrics the parent run logs, and one line for the terminal."""
        measured = statistics.median(epoch_times_s)
        error = (self.predicted_s - measured) / measured
        metrics = {"plan_predicted_epoch_time_s": self.predicted_s, "measured_median_epoch_time_s": measured,
                   "plan_epoch_error": error}
        line = f"  plan: predicted epoch {self.predicted_s:.3f} s, measured median {measured:.3f} s ({error:+.0%})"
        return metrics, line
