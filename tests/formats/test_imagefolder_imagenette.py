"""Imagenette and Tiny-ImageNet-200, each one spec + one YAML: fakes in the exact upstream archive
layouts (a .tgz and a .zip of tiny JPEGs) served from the loopback mirror, their labels checked
against what was written, unsafe zip members refused, and `jepa-fit data=<name>` end to end."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from jepa_datamodules.cli.terms import HydraTerms, console_text
from jepa_datamodules.errors import ExtractError

from jepa_datamodules import ImagenetteDataModule, TinyImageNetDataModule
from jepa_datamodules.storage import download as dl
from jepa_datamodules.storage.extract import safe_extract
from jepa_datamodules.catalog import get_spec
from jepa_datamodules.storage.verify import STAMP_NAME
from tests.helpers.fakes import IMAGENETTE_WNIDS, TINY_WNIDS
from tests.helpers.loopback import LoopbackServer

BIN = Path(sys.executable).parent
SMALL = dict(batch_size=4, num_workers=0, progress=False)
TINY = ["data.batch_size=4", "data.num_workers=0", "mask.min_keep=4",
        "trainer.max_steps=2", "model.embed_dim=32", "model.depth=1", "model.predictor_dim=16",
        "model.predictor_depth=1", "model.num_heads=2"]


@pytest.fixture
def mirror(served):
    """A fresh loopback server over the session's fake archives, so request counts start at 0."""
    upstream, fakes = served
    with LoopbackServer(upstream.root) as server:
        yield server, fakes


def prepared(cls, mirror, tmp_path: Path, archive: str):
    """``cls`` with its defaults, prepared from the mirror: the archive fetched once, verified, stamped."""
    server, fakes = mirror
    dm = cls(data_dir=tmp_path / "data", mirrors=[server.url], **SMALL)
    dm.prepare_data()
    assert server.count(f"/{archive}") == 1 and (dm.folder / STAMP_NAME).is_file()
    return dm, fakes[cls.spec_name].written


def assert_labels(source, written: dict[str, str], wnids: list[str]) -> None:
    """Every written image is read, with the label of its wnid in sorted order (-1 for none)."""
    found = dict(zip(source.paths, source.labels.tolist()))
    assert found == {rel: sorted(wnids).index(wnid) if wnid else -1 for rel, wnid in written.items()}


def test_imagenette_downloads_the_tgz_and_labels_follow_sorted_wnids(mirror, tmp_path):
    dm, written = prepared(ImagenetteDataModule, mirror, tmp_path, "imagenette2-320.tgz")
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


def test_tinyimagenet_downloads_the_zip_and_reads_val_labels_from_the_annotations(mirror, tmp_path):
    dm, written = prepared(TinyImageNetDataModule, mirror, tmp_path, "tiny-imagenet-200.zip")
    assert dm.hparams.image_size == 64 and dm.hparams.patch_size == 8
    for split in ("train", "val", "unlabeled"):
        source = dm.open_split(split)
        assert_labels(source, written[split], TINY_WNIDS)
        assert source.load(0).size == (64, 64)
    # A val image that the annotations do not list is named, not read with a made-up label.
    root = dm.folder / dm.spec.data_root
    (root / "val" / "images" / "val_99.JPEG").write_bytes((root / "val" / "images" / "val_0.JPEG").read_bytes())
    with pytest.raises(Exception, match=r"1 image\(s\) of .*val_99\.JPEG\) have no line in .*val_annotations\.txt"):
        dm.open_split("val")


@pytest.mark.parametrize("member, reason", [("tiny-imagenet-200/../../evil.txt", "has a '..' component"),
                                            ("/tmp/evil.txt", "has an absolute path")])
def test_zip_with_an_escaping_member_is_refused_before_anything_is_written(tmp_path, member, reason):
    archive = tmp_path / "tiny-imagenet-200.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("tiny-imagenet-200/wnids.txt", "n01443537\n")
        info = zipfile.ZipInfo(member)  # ZipFile.writestr would strip the leading "/" and the ".."
        zf.writestr(info, b"escaped")
    target = tmp_path / "out" / "tiny-imagenet-200"
    with pytest.raises(ExtractError) as caught:
        safe_extract(archive, target, progress=False)
    message = str(caught.value)
    assert message.startswith(f"Refusing to extract tiny-imagenet-200.zip: member {member!r} {reason}")
    assert message.count(". ") <= 2 and "\n" not in message
    assert not target.exists() and not (tmp_path / "evil.txt").exists()
    assert not list((tmp_path / "out").iterdir())


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
