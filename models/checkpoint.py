"""Save and load a model with its config; loading is always `weights_only=True`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from models.config import TrainConfig

CONFIG_KEY = "config_json"
MODEL_KEY = "model"


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The raw checkpoint dict; refuses anything but tensors and plain containers."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist: pass the path of a .pt file written by "
                                "a trial")
    return torch.load(path, map_location=map_location, weights_only=True)


def load_model(path: str | Path, map_location: str | torch.device = "cpu"):
    """(TrainConfig, model in eval mode, raw checkpoint) from a trial checkpoint."""
    from models import build_model

    ckpt = load_checkpoint(path, map_location)
    config = TrainConfig.from_json(ckpt[CONFIG_KEY])
    model = build_model(config.model)
    model.load_state_dict(ckpt[MODEL_KEY])
    return config, model.eval(), ckpt
