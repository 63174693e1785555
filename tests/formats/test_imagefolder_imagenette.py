"""Imagenette, read by ``formats/imagefolder.py`` from its upstream ``.tgz`` served by the loopback
mirror: labels follow the sorted wnids of what was written, ``variant`` picks the archive (an
unknown one is one sentence), and ``jepa-fit data=<name>`` runs end to end from the mirror for the
archive-served class-folder datasets (Imagenette and Tiny-ImageNet)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from jepa_datamodules import ImagenetteDataModule
from jepa_datamodules.catalog import get_spec
from jepa_datamodules.cli.terms import HydraTerms, console_text
from jepa_datamodules.storage.verify import STAMP_NAME
from tests.helpers.fakes import IMAGENETTE_WNIDS
from tests.helpers.storage import assert_labels, mirror, prepared  # noqa: F401 - mirror: a fixture

BIN = Path(sys.executable).parent
SMALL = dict(batch_size=4, num_workers=0, progress=False)
TINY = ["data.batch_size=4", "data.num_workers=0", "mask.min_keep=4",
        "trainer.max_steps=2", "model.embed_dim=32", "model.depth=1", "model.predictor_dim=16",
        "model.predictor_depth=1", "model.num_heads=2"]


def test_imagenette_downloads_the_tgz_and_labels_follow_sorted_wnids(mirror, tmp_path):
    dm, written = prepared(ImagenetteDataModule, mirror, tmp_path, "imagenette2-320.tgz", **SMALL)
    assert dm.hparams.image_size == 224 and dm.hparams.patch_size == 16
    for split in ("train", "val"):
        assert_labels(dm.open_split(split), written[split], IMAGENETTE_WNIDS)
    dm.setup()
    batch = next(iter(dm.train_dataloader()))
    assert tuple(batch["images"].shape) == (4, 3, 224, 224)


def test_imagenette_variant_picks_its_archive_and_an_unknown_one_is_one_sentence(tmp_path):
    small = get_spec("imagenette", "160")
    assert [a.urls for a in small.archives] == [("https://s3.amazonaws.com/fast-ai-imageclas/imagenette2-160.tgz",)]
    assert small.data_root == "imagenette2-160/imagenette2-160"
    assert get_spec("imagenette").archives[0].filename == "imagenette2-320.tgz"  # the default
    assert get_spec("imagenette", "full").archives[0].md5 == "fe2fc210e6bb7c5664d602c3cd71e612"
    with pytest.raises(ValueError, match=r"^Unknown value '640' for argument variant of imagenette\. "
                                         r"Valid values are \{320, 160, full\}\.$"):
        ImagenetteDataModule(data_dir=tmp_path, variant="640", **SMALL)
    dm = ImagenetteDataModule(data_dir=tmp_path, variant=160, **SMALL)  # Hydra hands data.variant=160 over as an int
    assert dm.spec.archives[0].filename == "imagenette2-160.tgz"
    assert "data.variant=160" in console_text(dm.fix_action(), HydraTerms())


@pytest.mark.slow
@pytest.mark.parametrize("name, sizes", [("imagenette", ["data.image_size=32", "data.patch_size=4"]),
                                         ("tinyimagenet", [])])
def test_jepa_fit_end_to_end_from_the_mirror(upstream, tmp_path, name, sizes):
    server, _, catalog = upstream
    env = {**os.environ, "OMP_NUM_THREADS": "1", "JEPA_CATALOG": str(catalog)}
    fit = subprocess.run([str(BIN / "jepa-fit"), f"data={name}", f"paths.data_dir={tmp_path / 'data'}",
                          f"paths.log_dir={tmp_path / 'runs'}", f"data.mirrors=[{server.url}]", *sizes, *TINY],
                         capture_output=True, text=True, cwd=tmp_path, timeout=600, env=env)
    assert fit.returncode == 0, fit.stderr[-3000:]
    assert f"dataset:        {name}" in fit.stdout and "steps:          2" in fit.stdout
    assert (tmp_path / "data" / name / STAMP_NAME).is_file()
