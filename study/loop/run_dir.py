"""One trial's directory in the layout of study/results.py (shared by `study.train` and Ray trials):
samples/epoch_NNN.png, metrics.csv/json, checkpoints/epoch_NNN.pt."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import torch

from study import results as R
from study.loop.trial import EpochArtifacts


class RunDirectory:
    """run_trial's reporter that writes each epoch's grid, the metrics so far and its checkpoint."""

    def __init__(self, out: Path, history: list[dict[str, Any]] | None = None):
        self.out = out
        (out / R.SAMPLES_DIR).mkdir(parents=True, exist_ok=True)
        (out / R.CHECKPOINTS_DIR).mkdir(parents=True, exist_ok=True)
        self.history: list[dict[str, Any]] = list(history or [])  # a resumed run's earlier epochs

    def __call__(self, record: dict[str, Any], artifacts: EpochArtifacts) -> None:
        import pandas as pd
        from torchvision.utils import save_image

        epoch = record[R.EPOCH]
        self.history.append(record)
        save_image(artifacts.samples, self.out / R.SAMPLES_DIR / R.sample_grid_name(epoch), nrow=8, padding=2)
        R.write_text_atomic(self.out / R.METRICS_JSON, json.dumps(self.history, indent=1))
        R.write_text_atomic(self.out / R.METRICS_CSV, pd.DataFrame(self.history).to_csv(index=False))
        if artifacts.checkpoint is not None:
            self.save_checkpoint(artifacts.checkpoint, R.checkpoint_name(epoch))

    def save_checkpoint(self, checkpoint: dict[str, Any], name: str) -> Path:
        path = self.out / R.CHECKPOINTS_DIR / name
        # serialised first: a full disk then raises OSError (ENOSPC), not torch's RuntimeError
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        with R.atomic_path(path) as tmp:
            tmp.write_bytes(buffer.getbuffer())
        return path


def latest_checkpoint(out: Path) -> Path | None:
    found = sorted((out / R.CHECKPOINTS_DIR).glob(R.CHECKPOINT_GLOB))
    return found[-1] if found else None


def checkpoint_file(directory: str | Path) -> Path:
    """The single epoch_NNN.pt inside a Tune checkpoint directory."""
    found = sorted(Path(directory).glob(R.CHECKPOINT_GLOB))
    if len(found) != 1:
        raise FileNotFoundError(f"expected one {R.CHECKPOINT_GLOB} in checkpoint directory {directory}, "
                                f"found {found}")
    return found[0]
