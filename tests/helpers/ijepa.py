"""I-JEPA's mask helpers, written here from their description, not copied: ``apply_masks``
gathers the tokens of each mask from ``[B, N, D]`` and concatenates the results along the
batch (mask ``i`` of sample ``b`` at row ``i * B + b``); ``repeat_interleave_batch``
repeats each consecutive chunk of ``B`` rows ``repeat`` times in place. The mask generators',
the adapters' and the tiny JEPA's tests feed our masks through them."""

from __future__ import annotations

import torch


def ijepa_apply_masks(x: torch.Tensor, masks: list[torch.Tensor]) -> torch.Tensor:
    gathered = []
    for m in masks:
        index = m.unsqueeze(-1).repeat(1, 1, x.size(-1))
        gathered.append(torch.gather(x, dim=1, index=index))
    return torch.cat(gathered, dim=0)


def ijepa_repeat_interleave_batch(x: torch.Tensor, B: int, repeat: int) -> torch.Tensor:
    chunks = [x[i * B:(i + 1) * B] for i in range(len(x) // B)]
    return torch.cat([chunk for chunk in chunks for _ in range(repeat)], dim=0)
