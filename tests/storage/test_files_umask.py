"""``storage/files.py``'s promise that the umask decides every mode: everything ``jepa-prepare``,
``jepa-fit`` and a LitData conversion create (stamps, indexes, staged and extracted folders,
chunks, pictures, locks) is shared as ``umask 022`` or ``umask 002`` says, in a real subprocess."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from jepa_datamodules.storage.verify import STAMP_NAME
from tests.helpers.fake_imagenet import make_imagenet_layout
from tests.helpers.fakes import catalog_override
from tests.helpers.storage import mirror, run_cli  # noqa: F401 - mirror: a fixture

TINY_SYNTHETIC_ARGS = ["data=synthetic", "data.num_train=64", "data.num_test=32", "data.batch_size=16",
                       "data.num_workers=0"]


_PREPARE_EVERYTHING = """
import sys
from pathlib import Path
from jepa_datamodules import CIFAR10DataModule, ImageNetDataModule, SyntheticDataModule
from jepa_datamodules.streaming import convert_to_litdata

data_dir, mirror, out = sys.argv[1:4]
small = dict(image_size=32, patch_size=4, batch_size=2, num_workers=0, progress=False)
CIFAR10DataModule(data_dir=data_dir, mirrors=[mirror], **small).prepare_data()
synthetic = SyntheticDataModule(data_dir=data_dir, num_train=64, num_test=32, **small)
synthetic.prepare_data()
imagenet = ImageNetDataModule(data_dir=data_dir, **small)
imagenet.prepare_data()
imagenet.setup()  # writes the file-list indexes
convert_to_litdata(synthetic, out, num_workers=1)
"""


def _modes_under(root: Path) -> list[tuple[Path, int]]:
    return [(p, stat.S_IMODE(p.lstat().st_mode)) for p in [root, *root.rglob("*")] if not p.is_symlink()]


@pytest.mark.slow
@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_everything_created_honours_the_umask(umask, mirror, tmp_path, monkeypatch):
    server, _ = mirror
    data_dir, litdata_out = tmp_path / "data", tmp_path / "chunks"
    make_imagenet_layout(data_dir / "imagenet", ["n01440764", "n01443537"], train_per_class=2, val_per_class=1)
    entries = yaml.safe_load(Path(os.environ["JEPA_CATALOG"]).read_text())
    entries["imagenet"] = {"num_classes": 2, "splits": {"train": 4, "val": 2}}
    monkeypatch.setenv("JEPA_CATALOG", str(catalog_override(tmp_path / "catalog.yaml", entries)))
    users_own = {p for p, _ in _modes_under(tmp_path)}
    script = tmp_path / "prepare.py"
    script.write_text(_PREPARE_EVERYTHING)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    prepared = subprocess.run([sys.executable, str(script), str(data_dir), server.url, str(litdata_out)],
                              capture_output=True, text=True, timeout=600, env=env,
                              preexec_fn=lambda: os.umask(umask))
    assert prepared.returncode == 0, prepared.stderr[-3000:]
    fit = run_cli("jepa-fit", *TINY_SYNTHETIC_ARGS, f"paths.data_dir={data_dir}", "trainer.max_steps=2",
                  cwd=tmp_path, umask=umask)
    assert fit.returncode == 0, fit.stderr[-3000:]

    created = [(p, m) for root in (data_dir, litdata_out, tmp_path / "runs") for p, m in _modes_under(root)
               if p not in users_own]  # the ImageNet files the test put there are the user's, not ours
    names = {p.name for p, _ in created}
    # What the issue names: stamps, indexes, staged and extracted folders, LitData output, pictures.
    for expected in (STAMP_NAME, ".index-train.npz", "data_batch_1", "train_images.npy", "index.json",
                     "masks.png", "training.png", ".cifar10.lock"):
        assert expected in names, expected
    for path, mode in created:
        wanted = (0o777 if path.is_dir() else 0o666) & ~umask
        if not path.is_dir():
            wanted &= ~0o111
        assert mode & wanted == wanted, f"{path} has mode {mode:o}, expected at least {wanted:o} under umask {umask:03o}"
