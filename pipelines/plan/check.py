"""The plan against the run: `kiln plan`'s epoch time for this config, beside the epochs a search measured."""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from pipelines.config import KilnConfig
from pipelines.plan import cost, hardware, shapes

CALIBRATE_S = 0.5  # per model shape with a text or image encoder


@dataclass(frozen=True)
class EpochCheck:
    predicted_s: float

    @classmethod
    def predict(
        cls, cfg: KilnConfig, *, input_dim: int, num_classes: int, train_rows: int, slots=(), say=None
    ) -> EpochCheck:
        """The prediction at the mean of the search's model shapes, as kiln plan prices the search. An MLP's
        shapes use the recorded local profile (calibrating would cost the quickstart seconds); a shape with a
        text or image encoder is calibrated here (one to three seconds each), since attention and convolutions
        run at a far lower FLOP/s than the MLP the recorded profile measured."""
        profile = hardware.load_profile("local")
        samples = shapes.shape_samples(cfg)
        if slots and say is not None:
            say(f"  plan: timing the search's {len(samples)} model shape(s) on this machine ...")

        def shape_profile(sample: dict) -> hardware.HardwareProfile:
            if not slots:
                return profile
            from pipelines.plan import calibrate  # torch: only for models that need it

            return calibrate.for_shape(
                profile, cfg.with_sample(sample), input_dim, num_classes, slots=slots, seconds=CALIBRATE_S
            )

        epochs = [
            cost.shape_epoch(
                cfg,
                sample,
                shape_profile(sample),
                input_dim=input_dim,
                num_classes=num_classes,
                train_rows=train_rows,
                slots=slots,
            )["epoch_time_s"]
            for sample in samples
        ]
        return cls(sum(epochs) / len(epochs))

    @property
    def tags(self) -> dict[str, str]:
        return {"kiln.plan.predicted_epoch_time_s": f"{self.predicted_s:.4f}"}

    def compare(self, epoch_times_s: list[float]) -> tuple[dict[str, float], str]:
        """The metrics the parent run logs, and one line for the terminal."""
        measured = statistics.median(epoch_times_s)
        error = (self.predicted_s - measured) / measured
        metrics = {
            "plan_predicted_epoch_time_s": self.predicted_s,
            "measured_median_epoch_time_s": measured,
            "plan_epoch_error": error,
        }
        line = f"  plan: predicted epoch {self.predicted_s:.3f} s, measured median {measured:.3f} s ({error:+.0%})"
        return metrics, line
