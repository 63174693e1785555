"""Redraw the mask pictures in docs/ (the README shows them): `python docs/make_pictures.py`.

Uses the synthetic dataset at 32 px with 4 px patches (an 8x8 grid, what `jepa-fit` trains on
by default; the picture enlarges each view 6x) for the multi-block masks, and at 96 px with 8 px
patches (a 12x12 grid) for the hierarchical ones, whose fine blocks need the finer grid.
"""

from pathlib import Path

from jepa_datamodules import HierarchicalMaskGenerator, MultiBlockMaskGenerator, SyntheticDataModule
from jepa_datamodules.cli.mask_viz import draw_mask_grid

HERE = Path(__file__).resolve().parent

for name, generator, size, patch in (("masks_multiblock", MultiBlockMaskGenerator(), 32, 4),
                                     ("masks_hierarchical", HierarchicalMaskGenerator(), 96, 8)):
    dm = SyntheticDataModule(data_dir=HERE.parent / "data", num_train=256, num_test=64, resolution=size,
                             image_size=size, patch_size=patch, batch_size=8, num_workers=0, mask=generator,
                             progress=False)
    dm.prepare_data()
    batch = next(iter(dm.train_dataloader()))
    print(draw_mask_grid(batch["images"], batch["context_masks"], batch["target_masks"], patch, HERE / f"{name}.png",
                         max_images=6, recipe=generator, title="synthetic training views"))
