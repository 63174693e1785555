"""``SaveOnInterrupt``: Ctrl-C (SIGINT) or a scheduler's SIGTERM ends a run with a resumable
checkpoint instead of losing it.

Without it Lightning answers Ctrl-C with "attempting graceful shutdown" and exits, and SIGTERM
stops at the end of the epoch at best; with checkpoints saved at epoch ends only, the steps
since the last one are lost. This callback takes both signals while the training loop runs,
finishes the batch in hand, saves a checkpoint (mid-epoch, which Lightning and the DataModule
resume exactly: the same samples, masks and views, the same schedules) and stops the run.
A second signal before the save interrupts at once, as Python would. Other signals (SLURM's
SIGUSR1 requeue) stay Lightning's.
"""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from typing import Any, Callable

from lightning import Callback, LightningModule, Trainer

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class SaveOnInterrupt(Callback):
    """On SIGINT or SIGTERM: save ``interrupted-epoch<E>-step<S>.ckpt`` at the next batch boundary,
    print how to continue, and stop training.

    Args:
        dirpath: the checkpoint's folder [None = the ModelCheckpoint's folder, or
            ``<default_root_dir>/checkpoints`` without one].
        command: the line printed to continue, given the checkpoint path [None =
            ``Trainer.fit(model, datamodule=dm, ckpt_path='<path>')``]; ``jepa-fit`` prints its
            own command line with ``ckpt_path=<path>``.

    After the fit, ``signal_name`` (``"SIGINT"``, ``"SIGTERM"``) and ``checkpoint`` say whether
    and where it saved. Use: ``Trainer(callbacks=[SaveOnInterrupt()])``.
    """

    def __init__(self, dirpath: str | Path | None = None, command: Callable[[str], str] | None = None):
        self.dirpath = Path(dirpath) if dirpath is not None else None
        self.command = command
        self.received: int | None = None
        self.signal_name: str | None = None
        self.checkpoint: str | None = None
        self._previous: dict[int, Any] = {}

    # -- the handlers live while the training loop runs (and only in the main thread, where Python allows them)
    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in SIGNALS:
            self._previous[signum] = signal.signal(signum, self._on_signal)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._restore()

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self._restore()

    def _restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def _on_signal(self, signum: int, frame: Any) -> None:
        if self.received is not None:  # asked twice: stop now, as without this callback
            self._restore()
            signal.raise_signal(signum)
            return
        self.received = signum
        # os.write, not print: a handler that prints into a buffered write it interrupted fails.
        os.write(2, f"\n{signal.Signals(signum).name} received: saving a checkpoint after this batch "
                    "(send it again to stop at once)\n".encode())

    # -- the save, at the batch boundary
    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        # Every rank decides together: a signal may reach the ranks a batch apart.
        if not trainer.strategy.reduce_boolean_decision(self.received is not None, all=False):
            return
        self.signal_name = signal.Signals(self.received).name if self.received is not None else "SIGTERM"
        path = self._folder(trainer) / f"interrupted-epoch{trainer.current_epoch}-step{trainer.global_step}.ckpt"
        partial = path.with_name(f".{path.name}.partial")
        trainer.save_checkpoint(partial)
        if trainer.is_global_zero:
            os.replace(partial, path)  # never a half-written checkpoint under the name that is printed
            resume = self.command(str(path)) if self.command else \
                f"Trainer.fit(model, datamodule=dm, ckpt_path={str(path)!r})"
            print(f"{self.signal_name}: saved {path} at step {trainer.global_step}; continue with:\n  {resume}",
                  flush=True)
        self.checkpoint = str(path)
        trainer.should_stop = True
        # Lightning validates when a run is asked to stop; an interrupted run should just stop.
        trainer.limit_val_batches = 0

    def _folder(self, trainer: Trainer) -> Path:
        if self.dirpath is not None:
            return self.dirpath
        callback = getattr(trainer, "checkpoint_callback", None)
        if callback is not None and getattr(callback, "dirpath", None):
            return Path(callback.dirpath)
        return Path(trainer.default_root_dir) / "checkpoints"
