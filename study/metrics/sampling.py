"""How a model's images are drawn for scoring: seeded, batched, in eval mode, with the noise on the CPU
so the images do not depend on the device."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from study.data import SPLIT_TEST, SPLIT_VAL
from study.metrics.real_stats import BATCH_SIZE, per_chunk

GENERATION_SEED_OFFSET = {SPLIT_VAL: 0, SPLIT_TEST: 1_000_003}  # test samples differ from validation ones


@contextmanager
def eval_mode(model: nn.Module):
    """Evaluate in eval mode, then give the model back in the mode it came in."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def generate(model, num_images: int, seed: int, batch_size: int = BATCH_SIZE) -> Iterator[torch.Tensor]:
    """Seeded, batched samples [B,1,28,28] in [0,1]; the noise is drawn on CPU so it is device-independent
    (a batch's noise at once, whatever the chunks a CPU decodes it in: real_stats.CPU_CHUNK)."""
    generator = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    for start in range(0, num_images, batch_size):
        z = model.sample_latent(min(batch_size, num_images - start), generator=generator)
        yield per_chunk(model.decode_to_unit, z.to(device))
