"""Save and load a model with its config; loading is always `weights_only=True`."""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import torch

from models import build_model
from models.config import ConfigError, TrainConfig

CONFIG_KEY = "config_json"
MODEL_KEY = "model"


class CheckpointError(ValueError):
    """A file that is not a readable trial checkpoint; the message names it and says what to pass."""


def _refuse(path: Path, why: str) -> CheckpointError:
    return CheckpointError(
        f"checkpoint {path} {why}; pass a checkpoints/*.pt file written by `python -m study.train --out DIR` "
        "or by a Ray trial of a study"
    )


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu",
                    data: bytes | None = None) -> dict[str, Any]:
    """The raw checkpoint dict; refuses anything but tensors and plain containers (weights_only),
    and anything that is not one of our checkpoints (a dict with a valid config and a state dict).
    `data`: the file's bytes when they were read elsewhere (a study on s3://); `path` then only names it."""
    path = Path(path)
    if data is None and not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist: pass the path of a .pt file written by "
                                "a trial")
    try:
        ckpt = torch.load(path if data is None else io.BytesIO(data), map_location=map_location,
                          weights_only=True)
    except pickle.UnpicklingError:  # (torch's own message suggests weights_only=False: never do that)
        raise _refuse(path, "cannot be loaded weights-only: it is not a torch file, or it holds Python "
                            "objects besides tensors (weights-only loading never runs code from a file)"
                      ) from None
    except Exception as exc:  # RuntimeError (not a torch zip file, truncated), EOFError (empty) ...
        why = " ".join(f"{type(exc).__name__}: {exc}".split())[:200]
        raise _refuse(path, f"cannot be read as a torch file ({why})") from None
    if not isinstance(ckpt, dict) or CONFIG_KEY not in ckpt or not isinstance(ckpt.get(MODEL_KEY), dict):
        keys = sorted(map(str, ckpt))[:8] if isinstance(ckpt, dict) else type(ckpt).__name__
        raise _refuse(path, f"is a torch file but not a trial checkpoint (it holds {keys}, not "
                            f"'{CONFIG_KEY}' and '{MODEL_KEY}')")
    try:
        TrainConfig.from_json(ckpt[CONFIG_KEY])
    except (ConfigError, ValueError, TypeError) as exc:
        raise _refuse(path, f"holds an unusable configuration ({exc})") from None
    return ckpt


def load_model(path: str | Path, map_location: str | torch.device = "cpu", data: bytes | None = None):
    """(TrainConfig, model in eval mode, raw checkpoint) from a trial checkpoint (`data`: see
    load_checkpoint)."""
    ckpt = load_checkpoint(path, map_location, data)
    config = TrainConfig.from_json(ckpt[CONFIG_KEY])
    model = build_model(config.model)
    try:
        model.load_state_dict(ckpt[MODEL_KEY])
    except RuntimeError as exc:  # missing/unexpected keys or shapes: the weights do not fit the config
        why = " ".join(str(exc).split())[:200]
        raise _refuse(Path(path), f"holds weights that do not fit its own configuration ({why})") from None
    return config, model.eval(), ckpt
