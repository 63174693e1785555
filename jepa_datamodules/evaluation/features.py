"""Frozen features of a split: extraction (one process or DDP ranks), and a cache per checkpoint."""

from __future__ import annotations

import hashlib
import io
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import torch

from ..storage.files import atomic_write
from ..errors import ConfigError

#: ``features(model, images) -> (B, D)``: the hook that turns a batch of normalized images into features.
FeatureHook = Callable[[Any, torch.Tensor], torch.Tensor]


@dataclass
class SplitFeatures:
    """One split's features (float32, CPU), labels and item positions, sorted by position."""

    features: torch.Tensor
    labels: torch.Tensor
    indices: torch.Tensor
    seconds: float = 0.0

    @property
    def images_per_second(self) -> float:
        return len(self.labels) / self.seconds if self.seconds > 0 else float("nan")

    def state(self) -> dict[str, Any]:
        return {"features": self.features, "labels": self.labels, "indices": self.indices, "seconds": self.seconds}


@torch.no_grad()
def extract(model: Any, hook: FeatureHook, loader: Iterable[dict[str, Any]],
            finish: Callable[[dict[str, Any]], dict[str, Any]], device: torch.device | str) -> SplitFeatures:
    """Run ``hook(model, images)`` over every batch of ``loader`` on ``device``.

    ``finish`` moves nothing: it turns a batch already on ``device`` into what the model reads
    (the DataModule's ``on_after_batch_transfer``: uint8 -> normalized float). Returns this
    process's items, sorted by their position in the split.
    """
    started = time.perf_counter()
    features, labels, indices = [], [], []
    for batch in loader:
        batch = finish({key: value.to(device, non_blocking=True) if isinstance(value, torch.Tensor) else value
                        for key, value in batch.items()})
        output = hook(model, batch["images"])
        if not isinstance(output, torch.Tensor) or output.ndim != 2 or len(output) != len(batch["images"]):
            shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
            raise ConfigError(f"The feature hook returned {shape} for a batch of {len(batch['images'])} images; "
                             "allowed is one feature vector per image, a (batch, dim) tensor.")
        features.append(output.float().cpu())
        labels.append(batch["labels"].cpu())
        indices.append(batch["indices"].cpu())
    if device != "cpu" and torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - started
    return _sorted(torch.cat(features), torch.cat(labels), torch.cat(indices), seconds)


def _sorted(features: torch.Tensor, labels: torch.Tensor, indices: torch.Tensor, seconds: float) -> SplitFeatures:
    order = indices.argsort()
    return SplitFeatures(features[order], labels[order], indices[order], seconds)


def gather(local: SplitFeatures, device: torch.device | str = "cpu") -> SplitFeatures:
    """Every rank's items on every rank (uneven shards: padded to the longest for the
    collective, the padding dropped after), sorted by position; ``local`` itself without DDP."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return local
    world = torch.distributed.get_world_size()
    count = torch.tensor([len(local.labels)], device=device)
    counts = [torch.zeros_like(count) for _ in range(world)]
    torch.distributed.all_gather(counts, count)
    longest = int(max(c.item() for c in counts))
    parts = []
    for tensor in (local.features, local.labels, local.indices):
        padded = torch.zeros((longest, *tensor.shape[1:]), dtype=tensor.dtype, device=device)
        padded[:len(tensor)] = tensor.to(device)
        received = [torch.zeros_like(padded) for _ in range(world)]
        torch.distributed.all_gather(received, padded)
        parts.append(torch.cat([r[:int(c.item())] for r, c in zip(received, counts)]).cpu())
    return _sorted(*parts, local.seconds)


class FeatureCache:
    """Features on disk under ``folder``, one file per (checkpoint, data, split, hook) key:
    a second evaluation of the same checkpoint reads them instead of running the model."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)

    @staticmethod
    def key(checkpoint: Path, settings: dict[str, Any]) -> str:
        """A digest of the checkpoint file (path, size, modification time) and the settings."""
        stat = Path(checkpoint).stat()
        identity = {"checkpoint": str(Path(checkpoint).resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
                    **settings}
        return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:20]

    def path(self, key: str) -> Path:
        return self.folder / f"features-{key}.pt"

    def load(self, key: str) -> SplitFeatures | None:
        path = self.path(key)
        if not path.is_file():
            return None
        state = torch.load(path, map_location="cpu", weights_only=True)
        return SplitFeatures(state["features"], state["labels"], state["indices"], float(state["seconds"]))

    def save(self, key: str, split: SplitFeatures) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        torch.save(split.state(), buffer)
        return atomic_write(self.path(key), lambda handle: handle.write(buffer.getvalue()))
