"""``cli/inventory.py``: `jepa-datasets` (the catalog, its on-disk state, disk planning), the README's
datasets table generated from the same specs, and `jepa-prepare data=all-auto`.

On-disk states are made the way a user makes them: a verified dataset by prepare_data()
from the loopback mirror, a partial one by a download cut off mid-body."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from jepa_datamodules import CIFAR10DataModule, CIFAR100DataModule, SyntheticDataModule
from jepa_datamodules.catalog import SPECS, get_spec
from jepa_datamodules.cli.inventory import (
    AllAutoDownload,
    PrepareAllError,
    disk_state,
    inventory,
    inventory_table,
    markdown_table,
    plans,
    print_inventory,
)
from tests.helpers import REPO
from tests.helpers.loopback import LoopbackServer

BIN = Path(sys.executable).parent


def table_row(text: str, name: str) -> list[str]:
    """The cells of the row for ``name`` (cells are separated by two or more spaces)."""
    for line in text.splitlines():
        cells = re.split(r"\s{2,}", line.strip())
        if cells[0] == name:
            return cells
    raise AssertionError(f"no row for {name!r} in:\n{text}")


# ------------------------------------------------------------------ the catalog table
def test_table_lists_every_spec_with_its_facts(tmp_path):
    text = inventory_table(tmp_path)
    for name in SPECS:
        assert table_row(text, name)[-2:] == ["absent", "-"]
    assert table_row(text, "stl10")[:8] == ["stl10", "yes", "2.6 GB", "3.1 GB", "5,000 train / 8,000 test / 100,000 unlabeled",
                                           "10", "96", "96 / 8"]
    assert table_row(text, "synthetic")[1:4] == ["generated", "-", "-"]
    assert table_row(text, "imagenet")[1:3] == ["manual", "154.6 GB"]
    assert table_row(text, "imagenet100")[1] == "from imagenet"
    assert "free on its filesystem" in text.splitlines()[0]


def test_the_packages_own_folders_are_shown_with_their_size_and_how_to_free_them(tmp_path):
    """Bench stand-ins and own-folder indexes live under data_dir too: jepa-datasets shows them."""
    (tmp_path / "bench-standins" / "imagenet-5000-v1").mkdir(parents=True)
    (tmp_path / "bench-standins" / "imagenet-5000-v1" / "a.jpg").write_bytes(b"x" * 200_000)
    assert "imagefolder-state" not in inventory_table(tmp_path)  # only what is there
    (tmp_path / "imagefolder-state" / "mine-0123").mkdir(parents=True)
    lines = [line for line in inventory_table(tmp_path).splitlines() if line.startswith("also: ")]
    assert len(lines) == 2
    standins = tmp_path / "bench-standins"
    assert lines[0].startswith(f"also: 2") and f"in {standins}, jepa-bench's stand-in datasets" in lines[0]
    assert f"1 entry; `rm -rf {standins}` frees it" in lines[0]
    assert f"`rm -rf {tmp_path / 'imagefolder-state'}` frees it" in lines[1]


def test_markdown_table_has_one_row_per_spec():
    rows = markdown_table().splitlines()
    assert rows[0] == "| name | auto-download | archive | images | classes | native resolution | default image / patch |"
    assert [row.split(" | ")[0].lstrip("| ") for row in rows[2:]] == list(SPECS)
    assert "| cifar100 | yes | 169.0 MB | 50,000 train / 10,000 test | 100 | 32 | 224 / 16 |" in rows


def test_readme_datasets_table_is_the_generated_one():
    # The lead pastes markdown_table() into README.md; this keeps the two from drifting.
    assert markdown_table() in (REPO / "README.md").read_text(), (
        "README.md's datasets table differs from the catalog; paste this:\n" + markdown_table())


def test_totals_plan_minimal_auto_and_everything(tmp_path, monkeypatch):
    from jepa_datamodules.cli import inventory as inv

    monkeypatch.setattr(inv, "free_space", lambda path: (100 * 10**9, Path(tmp_path)))  # a 100 GB disk
    text = inventory_table(tmp_path)
    assert "(100.0 GB free on its filesystem)" in text.splitlines()[0]
    # archives, extracted, on disk, still needed (archive kept + extracted), fits
    assert table_row(text, "minimal (cifar10 + cifar100)")[1:] == ["339.5 MB", "372.5 MB", "-", "712.0 MB", "yes"]
    assert table_row(text, "all auto-download")[1:] == ["3.6 GB", "4.1 GB", "-", "7.7 GB", "yes"]
    # ImageNet's 154.6 GB archives plus as much again unpacked do not fit on 100 GB.
    assert table_row(text, "everything")[1:] == ["158.2 GB", "158.7 GB", "-", "317.0 GB", "no, 217.0 GB short"]
    auto = [s for s in SPECS.values() if s.auto_download]
    all_auto = plans(inventory(tmp_path))[1]
    assert all_auto.names == tuple(s.name for s in auto)
    assert all_auto.needed_bytes == sum(s.archive_bytes + s.extracted_bytes for s in auto)


# ------------------------------------------------------------------- what is on disk
def test_verified_partial_and_changed_datasets_are_told_apart(served, data_dir):
    server, fakes = served
    CIFAR10DataModule(data_dir=data_dir, mirrors=[server.url], progress=False).prepare_data()
    # A download cut off half-way, with no retry left: the .part stays for the next run.
    fake100 = fakes["cifar100"]
    half = (fake100.size + 1) // 2  # at least half, whatever the archive's size: the table shows 50%
    server.drop_after(f"/{fake100.path.name}", half, times=1)
    with pytest.raises(Exception, match="Could not download"):
        CIFAR100DataModule(data_dir=data_dir, mirrors=[server.url], progress=False, retries=0).prepare_data()

    cifar10, cifar100 = get_spec("cifar10"), get_spec("cifar100")
    verified = disk_state(cifar10, data_dir)
    assert verified.state == "verified"
    assert verified.used_bytes >= fakes["cifar10"].size  # the kept archive alone is that much
    partial = disk_state(cifar100, data_dir)
    assert partial.state == "downloading" and partial.partial_bytes == half
    assert disk_state(get_spec("stl10"), data_dir).state == "absent"

    buf = _printed(data_dir)
    assert table_row(buf, "cifar10")[-2] == "verified"
    assert table_row(buf, "cifar100")[-2] == "downloading 50%"
    assert table_row(buf, "stl10")[-2:] == ["absent", "-"]
    # minimal still needs CIFAR-100's archive (less what the .part holds) and its extracted data
    minimal = plans(inventory(data_dir))[0]
    assert minimal.needed_bytes == cifar100.archive_bytes - half + cifar100.extracted_bytes

    # A file changed after verification: present, but no longer vouched for by the stamp.
    batch = data_dir / "cifar10" / cifar10.files[0]
    batch.write_bytes(batch.read_bytes()[:-10])
    assert disk_state(cifar10, data_dir).state == "downloaded"


def test_generated_synthetic_settings_are_verified(data_dir):
    SyntheticDataModule(data_dir=data_dir, num_train=32, num_test=16, resolution=16, num_workers=0,
                        image_size=16, patch_size=4).prepare_data()
    state = disk_state(get_spec("synthetic"), data_dir)
    assert state.state == "verified" and state.settings == 1 and state.used_bytes > 32 * 16 * 16 * 3


def _printed(data_dir: Path) -> str:
    import io

    buf = io.StringIO()
    print_inventory(OmegaConf.create({"paths": {"data_dir": str(data_dir)}}), file=buf)
    return buf.getvalue()


# ------------------------------------------------------------------------- all-auto
def test_all_auto_is_prepare_only(data_dir):
    bundle = AllAutoDownload(data_dir=data_dir)
    assert bundle.spec.members == ("cifar10", "cifar100", "stl10", "imagenette", "tinyimagenet")
    assert bundle.folder == data_dir
    with pytest.raises(ValueError, match="only works with jepa-prepare"):
        bundle.setup("fit")


def test_all_auto_builds_each_dataset_from_its_own_config(data_dir):
    bundle = AllAutoDownload(data_dir=data_dir, mirrors=["http://mirror.invalid"], download=False)
    stl10 = bundle.build("stl10")
    assert type(stl10).__name__ == "STL10DataModule"
    assert stl10.hparams.image_size == 96 and stl10.hparams.train_split == "train+unlabeled"  # from conf/data/stl10.yaml
    assert stl10.folder == data_dir / "stl10"
    assert list(stl10.hparams.mirrors) == ["http://mirror.invalid"] and stl10.hparams.download is False


def _jepa(command: str, *args: str, env_extra: dict[str, str]) -> subprocess.CompletedProcess:
    env = {**os.environ, **env_extra}
    return subprocess.run([str(BIN / command), *args], capture_output=True, text=True, env=env, cwd=env_extra["JEPA_LOG_DIR"],
                          timeout=300)


@pytest.mark.slow
def test_all_auto_reports_one_failure_prepares_the_rest_and_retries_it(served, data_dir, tmp_path):
    server, fakes = served
    env = {"JEPA_CATALOG": os.environ["JEPA_CATALOG"], "JEPA_LOG_DIR": str(tmp_path)}
    # A server of its own, so the permanent 404 cannot leak into other tests.
    with LoopbackServer(server.root) as mirror:
        # The first in line fails, so the test shows the others still run after it.
        mirror.fail(f"/{fakes['cifar10'].path.name}", 404, times=None)
        run = _jepa("jepa-prepare", "data=all-auto", f"paths.data_dir={data_dir}", f"data.mirrors=[{mirror.url}]",
                    env_extra=env)
    assert run.returncode != 0
    assert "error: 1 of 5 datasets failed: cifar10" in run.stderr
    assert "Traceback" not in run.stderr
    assert table_row(run.stdout, "cifar10")[1] == "FAILED"
    assert table_row(run.stdout, "cifar100")[1] == "ready"
    assert table_row(run.stdout, "stl10")[1] == "ready"
    assert table_row(run.stdout, "imagenette")[1] == table_row(run.stdout, "tinyimagenet")[1] == "ready"
    reason = run.stdout.split("cifar10 failed: ", 1)[1]
    assert "HTTP 404" in reason and "data.mirrors" in reason  # the downloader's own advice, in full
    states = {spec.name: state.state for spec, state in inventory(data_dir)}
    assert (states["cifar10"], states["cifar100"], states["stl10"]) == ("absent", "verified", "verified")

    # Once the mirror has it, a re-run fetches only what failed and exits 0.
    with LoopbackServer(server.root) as mirror:
        run = _jepa("jepa-prepare", "data=all-auto", f"paths.data_dir={data_dir}", f"data.mirrors=[{mirror.url}]",
                    env_extra=env)
        fetched = {r.path for r in mirror.requests}
    assert run.returncode == 0, run.stderr
    assert fetched == {f"/{fakes['cifar10'].path.name}"}
    assert f"all-auto: ready and verified at {data_dir}" in run.stdout

    # And jepa-datasets, through its console script and JEPA_DATA_DIR, sees all five verified.
    listing = _jepa("jepa-datasets", env_extra={**env, "JEPA_DATA_DIR": str(data_dir)})
    assert listing.returncode == 0, listing.stderr
    for name in ("cifar10", "cifar100", "stl10", "imagenette", "tinyimagenet"):
        assert table_row(listing.stdout, name)[-2] == "verified"
    assert table_row(listing.stdout, "imagenet")[-2] == "absent"
