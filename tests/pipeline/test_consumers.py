"""Our batches in training code written elsewhere: I-JEPA's mask handling, boolean masks,
and the adapters (``jepa_datamodules.adapters``) that bridge the two conventions.

I-JEPA's helpers are written here from their description, not copied: ``apply_masks``
gathers the tokens of each mask from ``[B, N, D]`` and concatenates the results along the
batch (mask ``i`` of sample ``b`` at row ``i * B + b``); ``repeat_interleave_batch``
repeats each consecutive chunk of ``B`` rows ``repeat`` times in place.
"""

from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F

from jepa_datamodules import HierarchicalMaskGenerator, MultiBlockMaskGenerator, SyntheticDataModule, TinyJEPA
from jepa_datamodules.adapters import boolean_masks, ijepa_batch, indices_to_boolean, to_device
from tests.helpers import REPO

README = REPO / "README.md"


def ijepa_apply_masks(x: torch.Tensor, masks: list[torch.Tensor]) -> torch.Tensor:
    gathered = []
    for m in masks:
        index = m.unsqueeze(-1).repeat(1, 1, x.size(-1))
        gathered.append(torch.gather(x, dim=1, index=index))
    return torch.cat(gathered, dim=0)


def ijepa_repeat_interleave_batch(x: torch.Tensor, B: int, repeat: int) -> torch.Tensor:
    chunks = [x[i * B:(i + 1) * B] for i in range(len(x) // B)]
    return torch.cat([chunk for chunk in chunks for _ in range(repeat)], dim=0)


def test_ijepa_gather_and_cat_takes_our_masks_batch_after_batch():
    B, grid, D = 8, (14, 14), 5
    N = grid[0] * grid[1]
    features = torch.randn(B, N, D)
    masks = MultiBlockMaskGenerator(num_context=2, context_scale=(0.6, 0.9)).with_grid(grid)
    g = torch.Generator().manual_seed(0)
    for _ in range(100):
        masks_enc, masks_pred = masks(B, g)
        h = ijepa_apply_masks(features, masks_pred)  # fails with "Sizes of tensors must match" on unequal K
        z = ijepa_apply_masks(features, masks_enc)
        assert h.shape == (len(masks_pred) * B, masks_pred[0].shape[1], D)
        assert z.shape == (len(masks_enc) * B, masks_enc[0].shape[1], D)
        # Row i * B + b holds sample b's tokens of block i.
        assert torch.equal(h[2 * B + 3], features[3, masks_pred[2][3]])
        h = ijepa_repeat_interleave_batch(h, B, repeat=len(masks_enc))
        assert h.shape[0] == len(masks_pred) * len(masks_enc) * B
        # Target block t, context c, sample b at row (t * C + c) * B + b.
        assert torch.equal(h[(1 * 2 + 1) * B + 5], features[5, masks_pred[1][5]])


def test_ijepa_gather_and_cat_per_hierarchical_level():
    B, grid = 6, (14, 14)
    features = torch.randn(B, grid[0] * grid[1], 3)
    masks = HierarchicalMaskGenerator().with_grid(grid)
    g = torch.Generator().manual_seed(1)
    for _ in range(50):
        _, levels = masks(B, g)
        for blocks in levels:
            assert ijepa_apply_masks(features, blocks).shape[0] == len(blocks) * B


def test_tiny_jepa_loss_is_the_mean_over_every_context_target_pair():
    # TinyJEPA consumes the masks the I-JEPA way (gather, cat, repeat); its loss must be what
    # predicting each (context, target) pair on its own gives.
    torch.manual_seed(0)
    model = TinyJEPA(32, 4, 10, embed_dim=32, depth=1, num_heads=2, predictor_dim=16, predictor_depth=1).eval()
    model.log = lambda *args, **kwargs: None
    images, labels = torch.randn(4, 3, 32, 32), torch.arange(4)
    for generator in (MultiBlockMaskGenerator(num_context=2, context_scale=(0.6, 0.9), min_keep=4),
                      HierarchicalMaskGenerator(min_keep=4)):
        context_masks, target_masks = generator.with_grid((8, 8))(4, torch.Generator().manual_seed(2))
        batch = {"images": images, "labels": labels, "context_masks": context_masks, "target_masks": target_masks}
        model.training_step(batch, 0)
        blocks = [t for item in target_masks for t in (item if isinstance(item, list) else [item])]
        with torch.no_grad():
            targets = model._target_features(images)
            losses = []
            for c in context_masks:
                context = model.encoder(images, keep=[c])
                for t in blocks:
                    prediction = model.predictor(context, [c], [t])
                    losses.append(F.smooth_l1_loss(prediction, ijepa_apply_masks(targets, [t])))
        assert abs(model.losses[-1] - float(torch.stack(losses).mean())) < 1e-5


# ----------------------------------------------------------------------------- adapters


def small_synthetic(tmp_path, **kwargs) -> SyntheticDataModule:
    dm = SyntheticDataModule(data_dir=tmp_path, num_train=64, num_test=16, batch_size=8, num_workers=0,
                             progress=False, **kwargs)
    dm.prepare_data()
    return dm


def test_to_device_gives_what_a_lightning_module_receives(tmp_path):
    dm = small_synthetic(tmp_path)
    batch = next(iter(dm.train_dataloader()))
    assert batch["images"].dtype == torch.uint8
    finished = to_device(batch, dm, "cpu")
    assert finished["images"].dtype == torch.float32
    mean = torch.tensor(dm.spec.mean).view(1, 3, 1, 1)
    std = torch.tensor(dm.spec.std).view(1, 3, 1, 1)
    assert torch.allclose(finished["images"], (batch["images"].float() / 255 - mean) / std, atol=1e-5)


def test_ijepa_form_and_boolean_masks_agree_with_the_indices(tmp_path):
    dm = small_synthetic(tmp_path, mask=HierarchicalMaskGenerator(min_keep=4))
    batch = to_device(next(iter(dm.train_dataloader())), dm)
    n = dm.grid[0] * dm.grid[1]
    with pytest.raises(ValueError, match="pass level=0..1"):
        ijepa_batch(batch)
    images, masks_enc, masks_pred = ijepa_batch(batch, level=1)
    assert images.shape[0] == 8 and masks_pred == batch["target_masks"][1]
    ijepa_apply_masks(torch.randn(8, n, 4), masks_pred)  # one K within the level
    context, targets = boolean_masks(batch, n)
    assert context.shape == (8, n) and targets.shape == (8, 6 + 2, n)
    assert (context.sum(1) == masks_enc[0].shape[1]).all()
    flat = batch["target_masks"][0] + batch["target_masks"][1]
    for block, indices in enumerate(flat):
        assert torch.equal(targets[:, block].nonzero()[:, 1].view(8, -1), indices)
    assert not (context & targets.any(1)).any()  # the context excludes every target
    assert torch.equal(indices_to_boolean(masks_enc[0], n), context)


def readme_section_code(title: str) -> list[str]:
    text = README.read_text()
    start = text.index(f"## {title}\n")
    section = text[start:text.index("\n## ", start + 1)]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def test_readme_own_training_code_examples_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    blocks = readme_section_code("Using your own training code")
    assert len(blocks) == 3
    old = 'SyntheticDataModule(data_dir="data", batch_size=64)'
    assert old in blocks[0], "the README's I-JEPA example no longer builds the DataModule this test shrinks"
    blocks[0] = blocks[0].replace(old, 'SyntheticDataModule(data_dir="data", batch_size=8, num_train=64, num_test=16, '
                                       'num_workers=0, progress=False)')
    namespace: dict = {}
    B = 8
    exec(compile(blocks[0], "README.md", "exec"), namespace)  # I-JEPA's loop, two epochs
    assert namespace["ipe"] == 8 and namespace["itr"] == 7  # the second epoch ran whole
    assert namespace["imgs"].dtype == torch.float32 and namespace["imgs"].shape == (B, 3, 32, 32)
    assert len(namespace["masks_pred"]) == 4
    k_context, k_target = namespace["masks_enc"][0].shape[1], namespace["masks_pred"][0].shape[1]
    assert namespace["context"].shape == (B, k_context, 16)
    assert namespace["targets"].shape == (4 * B, k_target, 16)
    exec(compile(blocks[1], "README.md", "exec"), namespace)  # H-JEPA's feed
    assert namespace["prediction_mask"].shape == (B, 64) and namespace["prediction_mask"].dtype == torch.bool
    assert namespace["masks"]["level_0"]["targets"].shape == (B, 4, 64)
    exec(compile(blocks[2], "README.md", "exec"), namespace)  # boolean masks
    assert namespace["context"].shape == (B, 64) and namespace["targets"].shape == (B, 4, 64)
    assert torch.equal(namespace["removed"], ~namespace["context"])
