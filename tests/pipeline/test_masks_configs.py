"""``jepa_datamodules.pipeline.masks`` through Hydra: ``conf/mask/*.yaml`` instantiate the
documented recipes (multi-block, hierarchical, none)."""

from __future__ import annotations

from jepa_datamodules.pipeline.masks import HierarchicalMaskGenerator, MultiBlockMaskGenerator
from tests.helpers import REPO
from tests.helpers.masks import gen


CONF = REPO / "conf" / "mask"


def test_hydra_configs_instantiate_the_documented_recipes():
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    multi = instantiate(OmegaConf.load(CONF / "multiblock.yaml"))
    assert isinstance(multi, MultiBlockMaskGenerator) and multi.grid is None
    assert multi.context.scale == (0.85, 1.0) and multi.context.aspect == (1.0, 1.0) and multi.num_context == 1
    assert multi.target.scale == (0.15, 0.2) and multi.target.aspect == (0.75, 1.5) and multi.num_targets == 4
    assert multi.allow_overlap is False and multi.min_keep == 10
    hier = instantiate(OmegaConf.load(CONF / "hierarchical.yaml"))
    assert isinstance(hier, HierarchicalMaskGenerator) and hier.level_names == ["fine", "coarse"]
    context, targets = hier.with_grid((14, 14))(4, gen(0))
    assert [len(t) for t in targets] == [6, 2]
    none = instantiate(OmegaConf.load(CONF / "none.yaml"))
    assert none.with_grid((8, 8))(4, gen(0)) is None
