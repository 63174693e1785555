"""``cli/tinyjepa.py``: the tiny JEPA consumes the masks the I-JEPA way (gather, cat, repeat),
and its loss is the mean over every (context, target) pair predicted on its own."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from jepa_datamodules import HierarchicalMaskGenerator, MultiBlockMaskGenerator, TinyJEPA
from tests.helpers.ijepa import ijepa_apply_masks


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
