"""``cli/apps.py``: a second ``jepa-prepare`` of a verified dataset answers from its stamp
without importing torch or Lightning."""

from __future__ import annotations

import subprocess
import sys

from tests.helpers.console import batch_job as cli


def test_prepare_with_nothing_to_do_answers_from_the_stamp_without_torch(tmp_path):
    """A second `jepa-prepare` of a verified dataset reads the stamp only: torch and Lightning are
    never imported (they are most of a command's start-up; `time jepa-prepare data=synthetic`)."""
    small = ["data=synthetic", "data.num_train=64", "data.num_test=16", f"paths.data_dir={tmp_path / 'data'}",
             f"paths.log_dir={tmp_path / 'runs'}"]
    first = cli("jepa-prepare", *small, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    assert len(list((tmp_path / "runs").glob("jepa-prepare/*"))) == 1
    probe = (
        "import sys\n"
        "from jepa_datamodules.cli import apps\n"
        f"sys.argv = ['jepa-prepare', *{small!r}]\n"
        "apps.prepare()\n"
        "print('heavy:', sorted(m for m in ('torch', 'lightning', 'torchvision') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith("synthetic: ready and verified at "), result.stdout + result.stderr[-2000:]
    assert lines[-1] == "heavy: []"
    assert len(list((tmp_path / "runs").glob("jepa-prepare/*"))) == 1  # the first run's; the second made nothing
