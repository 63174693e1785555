"""The foundation end to end: CIFAR archives in their upstream format served over loopback,
fetched through the mirror setting, verified, read back exactly; configs; Trainer runs;
the errors a user meets."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import lightning
import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_module
from hydra.utils import instantiate

from jepa_datamodules import CIFAR10DataModule, CIFAR100DataModule, SyntheticDataModule, TinyJEPA
from jepa_datamodules.storage import download as dl
from jepa_datamodules.catalog import get_spec
from jepa_datamodules.pipeline.masks import MultiBlockMaskGenerator
from jepa_datamodules.formats.base import FormatError
from jepa_datamodules.formats.cifar import load_cifar_pickle
from tests.helpers import REPO

CONF_DATA = REPO / "conf" / "data"
SMALL = dict(image_size=32, patch_size=4, batch_size=8, num_workers=0)


def small_mask() -> MultiBlockMaskGenerator:
    return MultiBlockMaskGenerator(min_keep=4)


@pytest.mark.parametrize("name, cls", [("cifar10", CIFAR10DataModule), ("cifar100", CIFAR100DataModule)])
def test_cifar_downloads_through_mirror_and_reads_back_exactly(served, data_dir, name, cls):
    server, fakes = served
    fake = fakes[name]
    dm = cls(data_dir=data_dir, mirrors=[server.url], progress=False, **SMALL)
    before = server.count(f"/{fake.path.name}")
    dm.prepare_data()
    assert server.count(f"/{fake.path.name}") == before + 1
    assert dl.file_md5(data_dir / name / fake.path.name) == fake.md5
    for split in ("train", "test"):
        source = dm.open_split(split)
        assert len(source) == len(fake.labels[split])
        np.testing.assert_array_equal(source.images, fake.splits[split])
        np.testing.assert_array_equal(source.labels, fake.labels[split])


def test_cifar100_coarse_labels(served, data_dir):
    server, fakes = served
    dm = CIFAR100DataModule(data_dir=data_dir, mirrors=[server.url], label_type="coarse", progress=False, **SMALL)
    dm.prepare_data()
    assert dm.num_classes == 20
    np.testing.assert_array_equal(dm.open_split("test").labels, fakes["cifar100"].labels["test"] // 5)


def test_second_prepare_neither_downloads_nor_hashes(served, data_dir, monkeypatch):
    server, fakes = served
    dm = CIFAR10DataModule(data_dir=data_dir, mirrors=[server.url], progress=False, **SMALL)
    dm.prepare_data()
    served_before = server.count("/cifar-10-python.tar.gz")

    def no_hashing(*args, **kwargs):
        raise AssertionError("a verified dataset was hashed again")

    monkeypatch.setattr(dl, "file_md5", no_hashing)
    CIFAR10DataModule(data_dir=data_dir, mirrors=[server.url], progress=False, **SMALL).prepare_data()
    assert server.count("/cifar-10-python.tar.gz") == served_before


class _Exploit:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_malicious_pickle_is_refused(tmp_path):
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({"data": np.zeros((1, 3072), np.uint8), "labels": [_Exploit()]}, protocol=2))
    with pytest.raises(FormatError, match="refusing to unpickle"):
        load_cifar_pickle(path)


def test_batches_are_uint8_until_the_device_and_carry_masks(tmp_path):
    dm = SyntheticDataModule(data_dir=tmp_path, num_train=64, num_test=16, mask=small_mask(), progress=False, **SMALL)
    dm.prepare_data()
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["images"].dtype == torch.uint8 and batch["images"].shape == (8, 3, 32, 32)
    assert batch["labels"].dtype == torch.int64 and batch["labels"].shape == (8,)
    assert len(batch["context_masks"]) == 1 and len(batch["target_masks"]) == 4
    assert batch["context_masks"][0].shape[0] == 8 and int(batch["context_masks"][0].max()) < 64
    on_device = dm.on_after_batch_transfer(batch, 0)
    assert on_device["images"].dtype == torch.float32
    assert abs(float(on_device["images"].mean())) < 1.5


def test_val_carved_from_train_with_seeded_split(tmp_path):
    kwargs = dict(data_dir=tmp_path, num_train=100, num_test=20, val_fraction=0.2, progress=False, **SMALL)
    first = SyntheticDataModule(**kwargs)
    first.prepare_data()
    first.setup()
    second = SyntheticDataModule(**kwargs)
    second.setup()
    assert len(first.datasets["val"]) == 20 and len(first.datasets["train"]) == 80
    np.testing.assert_array_equal(first.datasets["val"].source.indices, second.datasets["val"].source.indices)
    assert not set(first.datasets["val"].source.indices) & set(first.datasets["train"].source.indices)
    assert len(first.datasets["test"]) == 20


def test_every_data_config_composes_and_instantiates(tmp_path):
    names = sorted(p.stem for p in CONF_DATA.glob("*.yaml") if not p.stem.startswith("_"))  # _base_: shared keys
    assert {"synthetic", "cifar10", "cifar100"} <= set(names)
    with initialize_config_module(config_module="jepa_datamodules.conf", version_base="1.3"):
        for name in names:
            cfg = compose("config", overrides=[f"data={name}", f"paths.data_dir={tmp_path}"])
            dm = instantiate(cfg.data)
            if getattr(dm, "prepare_only", False):  # data=all-auto: a bundle that jepa-prepare runs, no loaders
                assert dm.spec.members and all(get_spec(m).auto_download for m in dm.spec.members)
                assert dm.folder == tmp_path
                continue
            assert dm.spec.name == name.split("_")[0] or dm.spec.name == name
            assert dm.hparams.image_size % dm.hparams.patch_size == 0
            assert str(dm.folder).startswith(str(tmp_path))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["synthetic", "cifar10", "cifar100"])
def test_trainer_fast_dev_run_with_each_datamodule(served, data_dir, name):
    server, _ = served
    with initialize_config_module(config_module="jepa_datamodules.conf", version_base="1.3"):
        cfg = compose("config", overrides=[
            f"data={name}", f"paths.data_dir={data_dir}", "data.num_workers=0", "data.image_size=32",
            "data.patch_size=4", "data.batch_size=8", "mask.min_keep=4"]
            + ([f"data.mirrors=[{server.url}]"] if name != "synthetic" else ["data.num_train=64", "data.num_test=16"]))
    dm = instantiate(cfg.data)
    model = TinyJEPA(32, 4, dm.num_classes, embed_dim=32, depth=1, num_heads=2, predictor_dim=16, predictor_depth=1)
    trainer = lightning.Trainer(fast_dev_run=True, accelerator="cpu", logger=False, enable_progress_bar=False,
                                enable_model_summary=False)
    trainer.fit(model, datamodule=dm)
    assert trainer.state.finished and len(model.losses) == 1 and np.isfinite(model.losses[0])


@pytest.mark.parametrize("kwargs, message", [
    (dict(batch_size=0), "batch_size=0 is invalid; allowed is a positive integer"),
    (dict(num_workers=-1), "num_workers=-1 is invalid; allowed is 0 or more"),
    (dict(image_size=30, patch_size=4), "image_size=30 is not a multiple of patch_size=4"),
    (dict(crop_scale=(0.0, 1.0)), r"crop_scale=\(0.0, 1.0\) is invalid; allowed is \(low, high\) with 0 < low <= high <= 1"),
    (dict(crop_scale=(0.5, 1.5)), r"crop_scale=\(0.5, 1.5\) is invalid"),
])
def test_bad_arguments_say_what_is_allowed(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        CIFAR10DataModule(data_dir=tmp_path, **{**SMALL, **kwargs})


def test_unknown_dataset_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"Unknown dataset 'cifar11'. Valid values are \{synthetic, cifar10, cifar100"):
        get_spec("cifar11")


def test_no_network_names_url_target_and_fixes(served, data_dir):
    # Port 9 on loopback: nothing listens, the connection is refused at once.
    # The served catalog has no upstream URLs, so the dead mirror is the only candidate.
    dm = CIFAR10DataModule(data_dir=data_dir, mirrors=["http://127.0.0.1:9"], retries=0, progress=False, **SMALL)
    with pytest.raises(dl.DownloadError) as error:
        dm.prepare_data()
    text = str(error.value)
    assert "http://127.0.0.1:9/cifar-10-python.tar.gz" in text
    assert str(data_dir / "cifar10" / "cifar-10-python.tar.gz") in text
    assert "JEPA_DATA_MIRROR" in text or "mirrors" in text
    assert not (data_dir / "cifar10" / "cifar-10-python").exists()


def _cli(*args: str, env: dict | None = None, cwd: Path) -> subprocess.CompletedProcess:
    script = Path(sys.executable).parent / args[0]
    return subprocess.run([str(script), *args[1:]], capture_output=True, text=True, cwd=cwd, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})


def test_cli_user_error_is_one_sentence(tmp_path):
    result = _cli("jepa-prepare", "data=cifar10", "data.batch_size=0", f"paths.data_dir={tmp_path}", cwd=tmp_path)
    assert result.returncode == 2
    # The console names the setting as it is typed there (str(error) in Python says batch_size=0).
    assert result.stderr.strip().splitlines()[-1].startswith("error: data.batch_size=0 is invalid")
    assert "Traceback" not in result.stderr


def test_cli_unknown_dataset_lists_options(tmp_path):
    result = _cli("jepa-prepare", "data=cifar11", cwd=tmp_path)
    assert result.returncode != 0
    assert "cifar10" in result.stderr and "cifar100" in result.stderr and "synthetic" in result.stderr


@pytest.mark.slow
def test_jepa_fit_cifar10_from_the_command_line(served, data_dir, tmp_path):
    server, _ = served
    result = _cli("jepa-fit", "data=cifar10", f"data.mirrors=[{server.url}]", f"paths.data_dir={data_dir}",
                  f"paths.log_dir={tmp_path / 'runs'}", "data.image_size=32", "data.patch_size=4", "data.batch_size=16",
                  "data.num_workers=0", "mask.min_keep=4", "trainer.max_steps=3", "model.embed_dim=32", "model.depth=1",
                  "model.predictor_dim=16", "model.predictor_depth=1", "model.num_heads=2",
                  env={"JEPA_CATALOG": os.environ["JEPA_CATALOG"]}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "== jepa-fit summary ==" in result.stdout
    assert "dataset:        cifar10" in result.stdout
    assert "steps:          3" in result.stdout
    assert (data_dir / "cifar10" / ".jepa-verified.json").exists()
    # The run folder holds the pictures the summary names, as real PNGs.
    pictures = [line.split(":", 1)[1].strip() for line in result.stdout.splitlines() if line.startswith("picture:")]
    assert {Path(p).name for p in pictures} == {"masks.png", "training.png"}
    from PIL import Image

    for picture in pictures:
        with Image.open(picture) as image:
            assert image.format == "PNG" and image.width > 100


def test_cfg_job_after_overrides_and_runs_named_after_the_command(tmp_path):
    shown = _cli("jepa-fit", "data=stl10", "mask=hierarchical", "--cfg", "job", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "_target_: jepa_datamodules.STL10DataModule" in shown.stdout
    assert "_target_: jepa_datamodules.HierarchicalMaskGenerator" in shown.stdout
    # jepa-verify gets its no-run-folder settings from us: flags before or after the overrides still work.
    for args in (("--cfg", "job", "data=cifar10"), ("data=cifar10", "--cfg", "job")):
        shown = _cli("jepa-verify", *args, cwd=tmp_path)
        assert shown.returncode == 0 and "_target_: jepa_datamodules.CIFAR10DataModule" in shown.stdout, shown.stderr
    made = _cli("jepa-prepare", "data=synthetic", "data.num_train=20", "data.num_test=10",
                f"paths.data_dir={tmp_path / 'data'}", f"paths.log_dir={tmp_path / 'runs'}", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    assert [p.name for p in (tmp_path / "runs").iterdir()] == ["jepa-prepare"]


def test_failed_forced_download_keeps_the_archive(served, data_dir):
    server, fakes = served
    CIFAR10DataModule(data_dir=data_dir, mirrors=[server.url], progress=False, **SMALL).prepare_data()
    archive = data_dir / "cifar10" / "cifar-10-python.tar.gz"
    dead = CIFAR10DataModule(data_dir=data_dir, mirrors=["http://127.0.0.1:9"], retries=0, force=True, progress=False,
                             **SMALL)
    with pytest.raises(dl.DownloadError):
        dead.prepare_data()
    assert dl.file_md5(archive) == fakes["cifar10"].md5
    # Without force the kept archive is extracted and verified again; nothing is fetched.
    before = server.count("/cifar-10-python.tar.gz")
    CIFAR10DataModule(data_dir=data_dir, mirrors=[server.url], progress=False, **SMALL).prepare_data()
    assert server.count("/cifar-10-python.tar.gz") == before
    assert len(CIFAR10DataModule(data_dir=data_dir, **SMALL).open_split("train")) == 100
