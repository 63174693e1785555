"""The optional dependencies (extras ``fast``, ``imagenet``, ``pictures``): without them the
package still imports and trains, falls back where it can, and says what is missing where it cannot."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from jepa_datamodules.cli.fitting import FitSummary, binomial_tails, chance_verdict
from jepa_datamodules.formats.imagenet import ImageNetSetupError, parse_devkit
from tests.helpers import REPO


@pytest.mark.parametrize("n, p", [(20, 0.5), (1024, 0.1), (50_000, 0.001), (10_000, 0.005)])
def test_binomial_tails_agree_with_scipy(n, p):
    stats = pytest.importorskip("scipy.stats")
    tails = binomial_tails(n, p)
    for k in sorted({0, 1, n // 7, int(n * p), int(n * p) + 3, n // 2, n}):
        expected = float(stats.binom.sf(k - 1, n, p))
        assert tails[k] == pytest.approx(expected, rel=1e-9, abs=1e-300), (n, p, k)
    # The accuracy the verdict asks for is scipy's inverse survival function, plus one.
    verdict = chance_verdict(p, n, p)
    assert verdict["needed"] == pytest.approx((float(stats.binom.isf(0.01, n, p)) + 1) / n)


def test_summary_without_matplotlib_names_the_missing_extra(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` now raises ImportError
    summary = FitSummary(tmp_path)
    summary.validation_images = 1024
    dm = SimpleNamespace(num_classes=10, spec=SimpleNamespace(name="synthetic"),
                         hparams=SimpleNamespace(image_size=32, patch_size=4))
    report = summary.report(dm, SimpleNamespace(losses=[0.5, 0.4]), {"val/probe_accuracy": 0.43})
    out = capsys.readouterr().out
    assert "note:           no training.png: the curves need matplotlib (pip install 'jepa-datamodules[pictures]')" in out
    assert report["above_chance"] and not (tmp_path / "training.png").exists()
    assert json.loads((tmp_path / "summary.json").read_text())["pictures"] == {}


def test_imagenet_devkit_without_scipy_says_which_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "scipy", None)
    monkeypatch.setitem(sys.modules, "scipy.io", None)
    with pytest.raises(ImageNetSetupError, match=r"needs scipy.*pip install 'jepa-datamodules\[imagenet\]'"):
        parse_devkit(tmp_path / "ILSVRC2012_devkit_t12.tar.gz")


_EXTRAS = ("simplejpeg", "scipy", "matplotlib")

_WITHOUT_EXTRAS = r"""
import sys
import importlib.util
assert all(importlib.util.find_spec(name) is None for name in ("simplejpeg", "scipy", "matplotlib"))
import io
import numpy as np
from PIL import Image
from jepa_datamodules import SyntheticDataModule
from jepa_datamodules.pipeline import transforms
assert transforms.simplejpeg is None
dm = SyntheticDataModule(data_dir=sys.argv[1], num_train=64, num_test=16, batch_size=8, num_workers=0,
                         progress=False)
dm.prepare_data()
batch = next(iter(dm.train_dataloader()))
# A JPEG file view decodes through Pillow.
buffer = io.BytesIO()
Image.fromarray(np.full((40, 60, 3), 128, np.uint8)).save(buffer, "JPEG")
buffer.seek(0)
view = transforms.EvalView(32, 0.875)(Image.open(buffer))
print("ok", tuple(batch["images"].shape), tuple(view.shape))
"""


def _site_without_extras(where: Path) -> Path:
    """A folder that links every installed distribution except the extras: an environment
    where they were never installed (find_spec and importlib.metadata both miss them, as
    Lightning's and torchmetrics' availability checks look)."""
    import sysconfig

    site = Path(sysconfig.get_paths()["purelib"])
    where.mkdir()
    for entry in site.iterdir():
        if not entry.name.lower().startswith(_EXTRAS) and not entry.name.startswith("__editable__"):
            (where / entry.name).symlink_to(entry)
    return where


def test_the_library_trains_without_any_extra(tmp_path):
    site = _site_without_extras(tmp_path / "site")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONPATH": f"{REPO}:{site}"}
    result = subprocess.run([sys.executable, "-S", "-c", _WITHOUT_EXTRAS, str(tmp_path / "data")], capture_output=True,
                            text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "ok (8, 3, 32, 32) (3, 32, 32)"


def test_pyproject_declares_the_optional_imports_as_extras():
    text = (REPO / "pyproject.toml").read_text()
    dependencies = text.split("dependencies = [", 1)[1].split("]", 1)[0]
    for name in ("simplejpeg", "scipy", "matplotlib"):
        assert name not in dependencies, f"{name} is optional: it belongs in an extra"
    for extra in ('fast = ["simplejpeg', 'imagenet = ["scipy', 'pictures = ["matplotlib'):
        assert extra in text
