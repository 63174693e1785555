"""``cli/interrupt.py``: Ctrl-C (SIGINT) and a scheduler's SIGTERM save a resumable checkpoint at the
next batch boundary and say how to continue; continuing reproduces the uninterrupted run."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning
import pytest

from jepa_datamodules import MultiBlockMaskGenerator, SaveOnInterrupt, SyntheticDataModule, TinyJEPA
from tests.datamodule.test_base_resume import RECORDER_CALLBACK
from tests.helpers.recorder import tiny_fit_overrides


def synthetic(data_dir) -> SyntheticDataModule:
    return SyntheticDataModule(data_dir=data_dir, num_train=64, num_test=16, batch_size=8, num_workers=0,
                               progress=False, mask=MultiBlockMaskGenerator(min_keep=4))


def tiny() -> TinyJEPA:
    lightning.seed_everything(0, verbose=False)
    return TinyJEPA(32, 4, 10, embed_dim=32, depth=1, num_heads=2, predictor_dim=16, predictor_depth=1)


class SignalAt(lightning.Callback):
    """Sends this process ``signum`` as training batch ``step`` starts, as a user or a scheduler would."""

    def __init__(self, signum: int, step: int):
        self.signum, self.step = signum, step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step:
            os.kill(os.getpid(), self.signum)


def fit(model, data_dir, root: Path, max_steps: int, *callbacks, ckpt_path=None) -> lightning.Trainer:
    trainer = lightning.Trainer(accelerator="cpu", devices=1, max_steps=max_steps, logger=False,
                                enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                                default_root_dir=root, callbacks=list(callbacks))
    trainer.fit(model, datamodule=synthetic(data_dir), ckpt_path=ckpt_path)
    return trainer


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_save_on_interrupt_in_python_continues_to_the_uninterrupted_loss(tmp_path, capsys, signum):
    data_dir = tmp_path / "data"
    whole = tiny()
    fit(whole, data_dir, tmp_path / "whole", 20)
    saver = SaveOnInterrupt()
    interrupted = tiny()
    trainer = fit(interrupted, data_dir, tmp_path / "first", 20, saver, SignalAt(signum, 9))
    # The batch in hand finished (step 10), then the run stopped with a checkpoint.
    assert trainer.global_step == 10 and len(interrupted.losses) == 10
    assert saver.signal_name == signal.Signals(signum).name
    assert Path(saver.checkpoint).name == "interrupted-epoch1-step10.ckpt" and Path(saver.checkpoint).is_file()
    assert not list(Path(saver.checkpoint).parent.glob(".*partial"))
    out = capsys.readouterr().out
    assert f"ckpt_path={saver.checkpoint!r}" in out and "continue with" in out
    assert signal.getsignal(signum) is not saver._on_signal  # the handler lived only while training ran
    resumed = tiny()
    fit(resumed, data_dir, tmp_path / "second", 20, ckpt_path=saver.checkpoint)
    assert interrupted.losses + resumed.losses == pytest.approx(whole.losses, abs=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_jepa_fit_interrupted_saves_and_prints_the_command_that_continues_it(tmp_path, signum):
    (tmp_path / "recorder.py").write_text(RECORDER_CALLBACK)
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "OMP_NUM_THREADS": "1"}
    fit_script = Path(sys.executable).with_name("jepa-fit")
    common = [*tiny_fit_overrides(tmp_path), "trainer.max_steps=30",
              "+callbacks.recorder._target_=recorder.BatchRecorder"]

    def last_loss(out: str) -> str:
        return re.search(r"^loss:\s+\S+ -> (\S+)$", out, flags=re.M).group(1)

    record = tmp_path / "interrupted.jsonl"
    process = subprocess.Popen([str(fit_script), *common, f"+callbacks.recorder.path={record}"], cwd=tmp_path,
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not (record.exists() and len(record.read_text().splitlines()) >= 3):  # training is under way
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.05)
    process.send_signal(signum)
    out, err = process.communicate(timeout=300)
    assert process.returncode == 128 + signum, out[-2000:] + err[-3000:]
    command = re.search(r"^continue with: (.+)$", out, flags=re.M).group(1)
    checkpoint = re.search(r"ckpt_path=(\S+)$", command).group(1)
    assert Path(checkpoint).is_file() and Path(checkpoint).name.startswith("interrupted-")
    assert f"ended by:       {signal.Signals(signum).name} (resumable: {checkpoint})" in out
    saved_at = int(re.search(r"step(\d+)\.ckpt$", checkpoint).group(1))
    assert 3 <= saved_at < 30

    words = shlex.split(command)
    assert words[0] == "jepa-fit" and words[1:-1] == [*common, f"+callbacks.recorder.path={record}"]
    continued = subprocess.run([str(fit_script), *words[1:]], cwd=tmp_path, env=env, capture_output=True,
                               text=True, timeout=600, stdin=subprocess.DEVNULL)
    assert continued.returncode == 0, continued.stdout[-2000:] + continued.stderr[-3000:]
    assert re.search(rf"^steps:\s+{30 - saved_at}$", continued.stdout, flags=re.M)
    steps = [json.loads(line)[0] for line in record.read_text().splitlines()]
    assert steps == list(range(30))  # the interrupted run's steps, then the rest: none twice, none skipped

    whole = subprocess.run([str(fit_script), *common, f"+callbacks.recorder.path={tmp_path / 'whole.jsonl'}"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
                           stdin=subprocess.DEVNULL)
    assert whole.returncode == 0, whole.stderr[-3000:]
    assert last_loss(continued.stdout) == last_loss(whole.stdout)  # the same run, interrupted or not
