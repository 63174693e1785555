"""Imagenette and Tiny-ImageNet-200, each one spec + one YAML: fakes in the exact upstream archive
layouts (a .tgz and a .zip of tiny JPEGs) served from the loopback mirror, their labels checked
against what was written, unsafe zip members refused, and `jepa-fit data=<name>` end to end."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fakes import catalog_override, md5_of
from jepa_datamodules import ImagenetteDataModule, TinyImageNetDataModule
from jepa_datamodules import download as dl
from jepa_datamodules.catalog import get_spec
from jepa_datamodules.verify import STAMP_NAME
from loopback import LoopbackServer

BIN = Path(sys.executable).parent
SMALL = dict(batch_size=4, num_workers=0, progress=False)
TINY = ["data.batch_size=4", "data.num_workers=0", "mask.min_keep=4",
        "trainer.max_steps=2", "model.embed_dim=32", "model.depth=1", "model.predictor_dim=16",
        "model.predictor_depth=1", "model.num_heads=2"]
# Imagenette's ten wnids (as in the upstream archive); Tiny-ImageNet's fake keeps four classes.
IMAGENETTE_WNIDS = ["n01440764", "n02102040", "n02979186", "n03000684", "n03028079",
                    "n03394916", "n03417042", "n03425413", "n03445777", "n03888257"]
TINY_WNIDS = ["n09193705", "n01443537", "n07873807", "n02124075"]  # wnids.txt is not sorted upstream


def jpeg(rng: np.random.Generator, size: tuple[int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(buffer, "JPEG")
    return buffer.getvalue()


def make_imagenette(out_dir: Path, seed: int = 0) -> tuple[Path, dict[str, dict[str, str]]]:
    """imagenette2-320.tgz holding imagenette2-320/{train,val}/<wnid>/*.JPEG (and its noisy-labels
    csv); returns the archive and {split: {path under the split: wnid}}."""
    rng = np.random.default_rng(seed)
    written: dict[str, dict[str, str]] = {"train": {}, "val": {}}
    archive = out_dir / "imagenette2-320.tgz"
    with tarfile.open(archive, "w:gz") as tar:
        for split, per_class in (("train", 2), ("val", 1)):
            for wnid in reversed(IMAGENETTE_WNIDS):  # archive order is not label order
                for i in range(per_class):
                    name = f"{wnid}/{'ILSVRC2012_val_' if split == 'val' else wnid + '_'}{seed}{i:04d}.JPEG"
                    payload = jpeg(rng, (48, 32))
                    info = tarfile.TarInfo(f"imagenette2-320/{split}/{name}")
                    info.size = len(payload)
                    tar.addfile(info, io.BytesIO(payload))
                    written[split][name] = wnid
        csv = b"path,noisy_labels_0,is_valid\n"
        info = tarfile.TarInfo("imagenette2-320/noisy_imagenette.csv")
        info.size = len(csv)
        tar.addfile(info, io.BytesIO(csv))
    return archive, written


def make_tinyimagenet(out_dir: Path, seed: int = 0) -> tuple[Path, dict[str, dict[str, str]]]:
    """tiny-imagenet-200.zip in the CS231n layout; returns the archive and {split: {relpath: wnid}}
    (relpaths under tiny-imagenet-200/, wnid "" for the unlabeled test images)."""
    rng = np.random.default_rng(seed)
    written: dict[str, dict[str, str]] = {"train": {}, "val": {}, "unlabeled": {}}
    archive = out_dir / "tiny-imagenet-200.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        root = "tiny-imagenet-200"
        zf.writestr(f"{root}/wnids.txt", "\n".join(TINY_WNIDS) + "\n")
        zf.writestr(f"{root}/words.txt", "".join(f"{w}\tsomething\n" for w in TINY_WNIDS))
        for wnid in TINY_WNIDS:
            boxes = []
            for i in range(3):
                rel = f"train/{wnid}/images/{wnid}_{i}.JPEG"
                zf.writestr(f"{root}/{rel}", jpeg(rng, (64, 64)))
                written["train"][rel] = wnid
                boxes.append(f"{wnid}_{i}.JPEG\t0\t0\t63\t63\n")
            zf.writestr(f"{root}/train/{wnid}/{wnid}_boxes.txt", "".join(boxes))
        lines = []
        for i in range(8):
            wnid = TINY_WNIDS[int(rng.integers(len(TINY_WNIDS)))]
            rel = f"val/images/val_{i}.JPEG"
            zf.writestr(f"{root}/{rel}", jpeg(rng, (64, 64)))
            written["val"][rel] = wnid
            lines.append(f"val_{i}.JPEG\t{wnid}\t1\t2\t60\t61\n")
        zf.writestr(f"{root}/val/val_annotations.txt", "".join(lines))
        for i in range(5):
            rel = f"test/images/test_{i}.JPEG"
            zf.writestr(f"{root}/{rel}", jpeg(rng, (64, 64)))
            written["unlabeled"][rel] = ""
    return archive, written


@pytest.fixture(scope="module")
def upstream(tmp_path_factory):
    """Both fake archives behind one loopback server, and a $JEPA_CATALOG file with their md5s and counts."""
    root = tmp_path_factory.mktemp("newsets")
    nette, nette_written = make_imagenette(root)
    tiny, tiny_written = make_tinyimagenet(root)
    catalog = catalog_override(root / "catalog.yaml", {
        "imagenette": {"archives": [{"filename": nette.name, "md5": md5_of(nette), "size": nette.stat().st_size, "urls": []}],
                       "splits": {split: len(items) for split, items in nette_written.items()}},
        "tinyimagenet": {"archives": [{"filename": tiny.name, "md5": md5_of(tiny), "size": tiny.stat().st_size, "urls": []}],
                         "splits": {split: len(items) for split, items in tiny_written.items()},
                         "num_classes": len(TINY_WNIDS)},
    })
    with LoopbackServer(root) as server:
        yield server, catalog, {"imagenette": nette_written, "tinyimagenet": tiny_written}


@pytest.fixture
def served(upstream, monkeypatch):
    server, catalog, written = upstream
    monkeypatch.setenv("JEPA_CATALOG", str(catalog))
    return server, written


def prepared(cls, served, tmp_path: Path, archive: str):
    """``cls`` with its defaults, prepared from the mirror: the archive fetched once, verified, stamped."""
    server, written = served
    dm = cls(data_dir=tmp_path / "data", mirrors=[server.url], **SMALL)
    dm.prepare_data()
    assert server.count(f"/{archive}") == 1 and (dm.folder / STAMP_NAME).is_file()
    return dm, written


def assert_labels(source, written: dict[str, str], wnids: list[str]) -> None:
    """Every written image is read, with the label of its wnid in sorted order (-1 for none)."""
    found = dict(zip(source.paths, source.labels.tolist()))
    assert found == {rel: sorted(wnids).index(wnid) if wnid else -1 for rel, wnid in written.items()}


def test_imagenette_downloads_the_tgz_and_labels_follow_sorted_wnids(served, tmp_path):
    dm, written = prepared(ImagenetteDataModule, served, tmp_path, "imagenette2-320.tgz")
    assert dm.hparams.image_size == 224 and dm.hparams.patch_size == 16
    for split in ("train", "val"):
        assert_labels(dm.open_split(split), written["imagenette"][split], IMAGENETTE_WNIDS)
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
    assert "data.variant=160" in dm.command()


def test_tinyimagenet_downloads_the_zip_and_reads_val_labels_from_the_annotations(served, tmp_path):
    dm, written = prepared(TinyImageNetDataModule, served, tmp_path, "tiny-imagenet-200.zip")
    assert dm.hparams.image_size == 64 and dm.hparams.patch_size == 8
    for split in ("train", "val", "unlabeled"):
        source = dm.open_split(split)
        assert_labels(source, written["tinyimagenet"][split], TINY_WNIDS)
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
    with pytest.raises(dl.DownloadError) as caught:
        dl.safe_extract(archive, target, progress=False)
    message = str(caught.value)
    assert message.startswith(f"Refusing to extract tiny-imagenet-200.zip: member {member!r} {reason}")
    assert message.count(". ") <= 2 and "\n" not in message
    assert not target.exists() and not (tmp_path / "evil.txt").exists()
    assert not list((tmp_path / "out").iterdir())


@pytest.mark.slow
@pytest.mark.parametrize("name, sizes", [("imagenette", ["data.image_size=32", "data.patch_size=4"]),
                                         ("tinyimagenet", [])])
def test_jepa_fit_end_to_end_from_the_mirror(upstream, tmp_path, name, sizes):
    server, catalog, _ = upstream
    env = {**os.environ, "OMP_NUM_THREADS": "1", "JEPA_CATALOG": str(catalog)}
    fit = subprocess.run([str(BIN / "jepa-fit"), f"data={name}", f"paths.data_dir={tmp_path / 'data'}",
                          f"paths.log_dir={tmp_path / 'runs'}", f"data.mirrors=[{server.url}]", *sizes, *TINY],
                         capture_output=True, text=True, cwd=tmp_path, timeout=600, env=env)
    assert fit.returncode == 0, fit.stderr[-3000:]
    assert f"dataset:        {name}" in fit.stdout and "steps:          2" in fit.stdout
    assert (tmp_path / "data" / name / STAMP_NAME).is_file()
