"""Redraw the mask pictures in docs/ (the README shows them): `python docs/make_pictures.py`.

Uses the synthetic dataset at 96 px with 8 px patches (a 12x12 grid) so blocks are easy to see.
"""

from pathlib import Path

from jepa_datamodules import HierarchicalMaskGenerator, MultiBlockMaskGenerator, SyntheticDataModule
from jepa_datamodules.mask_viz import draw_mask_grid

HERE = Path(__file__).resolve().parent

for name, generator in (("masks_multiblock", MultiBlockMaskGenerator()), ("masks_hierarchical", HierarchicalMaskGenerator())):
    dm = SyntheticDataModule(data_dir=HERE.parent / "data", num_train=256, num_test=64, resolution=96, image_size=96,
                             patch_size=8, batch_size=8, num_workers=0, mask=generator, progress=False)
    dm.prepare_data()
    batch = next(iter(dm.train_dataloader()))
    print(draw_mask_grid(batch["images"], batch["context_masks"], batch["target_masks"], 8, HERE / f"{name}.png", max_images=8))
