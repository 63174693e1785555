"""``cli/apps.py`` checks its settings before any download: ``jepa-fit`` with a mask or trainer
setting it cannot use exits 2 with one sentence, quickly, having requested nothing and written
nothing."""

from __future__ import annotations

import time

import pytest

from tests.helpers.storage import cifar10_cli, last_error, mirror, run_cli  # noqa: F401 - mirror: a fixture


@pytest.mark.parametrize("override, message", [
    ("mask=none", "mask=none gives batches without context and target masks, which the JEPA model of jepa-fit "
                  "needs; allowed are mask=multiblock or mask=hierarchical."),
    ("trainer.max_steps=abc", "trainer.max_steps='abc' is invalid; allowed is a whole number (-1 = no limit)."),
])
def test_settings_errors_fail_before_any_download(override, message, mirror, data_dir, tmp_path):
    server, _ = mirror
    started = time.monotonic()
    result = run_cli("jepa-fit", *cifar10_cli(data_dir, server), override, cwd=tmp_path)
    assert result.returncode == 2
    assert last_error(result.stderr) == message
    assert server.requests == [] and list(data_dir.iterdir()) == []
    assert "Params" not in result.stdout  # no model summary was printed either
    assert time.monotonic() - started < 120
