"""The console scripts: each is a Hydra app over the same ``conf/config.yaml``.

``jepa-prepare`` downloads (or generates) and verifies (and converts to LitData with
``format=litdata output=...``), ``jepa-verify`` only verifies and prints the report,
``jepa-fit`` trains the tiny JEPA, ``jepa-bench`` measures the input pipeline against a
plain baseline, ``jepa-datasets`` shows the catalog and what is on disk. Overrides, ``--multirun`` and
``--cfg job`` work as in any Hydra app. A mistake of the user's (bad value, no network,
damaged file) ends with one ``error:`` sentence and exit status 2 (1 for a failed
verification), never a traceback.

What a run shows and leaves behind (its --help, its run folder, the dependency noise it
filters) is ``console.py``'s. This module imports neither torch nor Lightning (nor the
package's modules that do) until a command actually runs: ``--help`` and a refused override
answer in well under a second.
"""

from __future__ import annotations

import functools
import os
import shlex
import signal
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import hydra
from hydra.errors import InstantiationException
from omegaconf import DictConfig

from ..choices import choice_message
from ..errors import ConfigError, JEPADataError
from ..notices import Notice

from .console import (
    NO_RUN_FOLDER_COMMANDS,
    RunFolder,
    argv_without_run_folder,
    known_noise_filtered,
    lightning_logs_through_hydra,
    register_help,
)
from .terms import console_text, typed_key, typed_overrides

CONFIG = {"version_base": "1.3", "config_path": "pkg://jepa_datamodules.conf", "config_name": "config"}


class Sweep:
    """The jobs of a ``--multirun``: a job that fails with the user's error prints its sentence
    and the sweep goes on; at the end one line says which failed (``report``)."""

    jobs = 0
    failures: list[tuple[str, int]] = []  # (the job's overrides, exit status)

    @staticmethod
    def active() -> bool:
        try:
            from hydra.core.hydra_config import HydraConfig
            from hydra.types import RunMode

            return HydraConfig.get().mode == RunMode.MULTIRUN
        except ValueError:  # not inside a Hydra app
            return False

    @classmethod
    def failed(cls, status: int) -> None:
        from hydra.core.hydra_config import HydraConfig

        cls.failures.append((" ".join(HydraConfig.get().overrides.task), status))

    @classmethod
    def report(cls) -> None:
        """After the sweep: one sentence naming the failed jobs, and exit with the worst status."""
        if not cls.failures:
            return
        names = "; ".join(label for label, _ in cls.failures)
        rest = cls.jobs - len(cls.failures)
        print(f"error: {len(cls.failures)} of {cls.jobs} jobs failed ({names}), each with its sentence above; "
              f"the other {rest} completed.", file=sys.stderr)
        sys.exit(max(status for _, status in cls.failures))


def _is_rank_zero() -> bool:
    """Whether this process is the first of a multi-process run as the launchers mark it (Lightning's
    DDP sets LOCAL_RANK and NODE_RANK in every process, torchrun RANK, SLURM SLURM_PROCID); True alone."""
    return all(os.environ.get(name, "0") in ("", "0") for name in ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID"))


def _fail(message: str, status: int = 2) -> None:
    """The user's error as one sentence (once: by rank 0 of a DDP run, every rank exits with it);
    exits, except in a --multirun, whose other jobs go on."""
    if _is_rank_zero():
        print(f"error: {message}", file=sys.stderr)
    RunFolder.current().failed(f"error: {message}")
    if Sweep.active():
        Sweep.failed(status)
        return
    sys.exit(status)


def user_facing(task: Callable[[DictConfig], Any]) -> Callable[[DictConfig], Any]:
    """Turn the package's own errors into one sentence on stderr and a non-zero exit."""

    @functools.wraps(task)
    def wrapper(cfg: DictConfig) -> Any:
        RunFolder.new_job()
        Sweep.jobs += 1
        try:
            with known_noise_filtered(verbose=bool(cfg.get("verbose", False))):
                return task(cfg)
        except InstantiationException as error:
            cause = error.__cause__
            if isinstance(cause, JEPADataError):
                return _fail(console_text(cause), cause.exit_status)
            RunFolder.current().failed(f"{type(error).__name__}: {error}", sys.exc_info())
            raise
        except JEPADataError as error:  # the package's own: one sentence; anything else is a bug
            return _fail(console_text(error), error.exit_status)
        except Exception as error:
            from ..storage.files import is_storage_error, storage_error

            if isinstance(error, OSError) and is_storage_error(error):
                # A read-only, full or unwritable place that no check of ours named first: still one sentence.
                where = Path(error.filename).parent if error.filename else Path.cwd()
                return _fail(console_text(storage_error(error, where, Path(error.filename).name if error.filename else "a file")))
            # A bug, not the user's mistake: into the run's log, then Hydra prints the traceback.
            RunFolder.current().failed(f"{type(error).__name__}: {error}", sys.exc_info())
            raise

    return wrapper


def build_datamodule(cfg: DictConfig, prepare_only_ok: bool = False, **overrides: Any):
    dm = hydra.utils.instantiate(cfg.data, **overrides)
    if getattr(dm, "prepare_only", False) and not prepare_only_ok:
        raise ConfigError(f"data={dm.spec.name} only works with jepa-prepare; pick one dataset (e.g. data=cifar10) for this command.")
    return dm


# Trainer settings Lightning expects as whole numbers (None allowed); checked before any data is read.
_TRAINER_INTEGERS = ("max_epochs", "min_epochs", "max_steps", "min_steps", "log_every_n_steps",
                     "num_sanity_val_steps", "accumulate_grad_batches", "check_val_every_n_epoch")


def build_trainer(cfg: DictConfig, callbacks: list, **options: Any) -> Any:
    """The Lightning Trainer of ``cfg.trainer``; a bad setting is one sentence naming it."""
    for key in _TRAINER_INTEGERS:
        value = cfg.trainer.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            raise ConfigError(f"trainer.{key}={value!r} is invalid; allowed is a whole number"
                             f"{' (-1 = no limit)' if key in ('max_steps', 'max_epochs') else ''}.")
    try:
        return hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, **options)
    except InstantiationException as error:
        cause = error.__cause__ or error
        raise ConfigError(f"The trainer settings are invalid ({type(cause).__name__}: {cause}); "
                         "fix the trainer.* overrides or pick trainer=cpu, gpu or ddp.") from error


def check_checkpoint_fits(ckpt_path: str | None, model: Any) -> None:
    """Refuse, in one sentence, a ``ckpt_path`` saved by a run of another dataset or model (its
    weights do not fit this model: Lightning would print a long ``size mismatch`` traceback).
    A file this check cannot read is left to Lightning, which says why."""
    if not ckpt_path:
        return
    import torch

    path = Path(ckpt_path).expanduser()
    if not path.is_file():
        raise ConfigError(f"ckpt_path={ckpt_path} does not exist; point it at a .ckpt file a jepa-fit run "
                                "saved (its summary prints the path), or leave ckpt_path unset to start afresh.")
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True, mmap=True).get("state_dict", {})
    except Exception:  # noqa: BLE001 - not ours to judge: Lightning reports it
        return
    ours = model.state_dict()
    wrong = [f"{key} is {list(saved[key].shape)} there, {list(value.shape)} here" for key, value in ours.items()
             if key in saved and tuple(saved[key].shape) != tuple(value.shape)]
    missing = [key for key in ours if key not in saved]
    if wrong or missing:
        detail = wrong[0] if wrong else f"it has no {missing[0]}"
        raise ConfigError(f"ckpt_path={ckpt_path} was saved by a run of another dataset or model ({detail}); resume it "
                         "with the data= and model.* settings it was trained with, or leave ckpt_path unset to start "
                         "afresh.")


def shown_folder(dm: Any) -> Path:
    """The folder the user knows the dataset by (an own folder's root, not our state beside it)."""
    data = getattr(dm, "data", None)
    return data.shown_folder if data is not None else dm.folder


def check_masks_for_jepa(dm: Any) -> None:
    """jepa-fit's JEPA needs context and target masks: refuse mask=none before any data is read."""
    from ..pipeline.masks import NoMaskGenerator

    if dm.mask_generator is None or isinstance(dm.mask_generator, NoMaskGenerator):
        raise ConfigError("mask=none gives batches without context and target masks, which the JEPA model of "
                         "jepa-fit needs; allowed are mask=multiblock or mask=hierarchical.")


# --------------------------------------------------------------------- the tasks
def already_prepared(cfg: DictConfig) -> Any:
    """The dataset ``cfg.data`` picks, when a stamp records this very copy as verified and
    ``jepa-prepare`` has nothing to do; else None. Answered from the stamp alone, without the
    DataModule (it imports torch and Lightning: seconds of a command with nothing to do).
    Anything unusual (another command-line mode, an option this shortcut does not know) takes
    the full path, which refuses bad settings in its own words."""
    if cfg.force or cfg.instructions or cfg.format is not None or cfg.get("resize") is not None:
        return None
    try:
        from importlib.resources import files

        from hydra.core.hydra_config import HydraConfig
        from omegaconf import OmegaConf

        from ..formats.dataset import open_dataset
        from ..preparation import is_prepared

        name = HydraConfig.get().runtime.choices.get("data")
        shared = set(OmegaConf.load(files("jepa_datamodules.conf").joinpath("data", "_base_.yaml").open()))
        data = OmegaConf.to_container(cfg.data, resolve=True)
        options = {key: value for key, value in data.items() if key not in shared and key != "_target_"}
        variant = options.pop("variant", None)
        dataset = open_dataset(name, data["data_dir"], seed=data["seed"], progress=False,
                               variant=None if variant is None else str(variant), **options)
        return dataset if is_prepared(dataset) else None
    except Exception:  # noqa: BLE001 - the full path below gives the real answer
        return None


@user_facing
def prepare_task(cfg: DictConfig) -> None:
    start = time.perf_counter()
    ready = already_prepared(cfg)
    if ready is not None:
        print(f"{ready.spec.name}: ready and verified at {ready.shown_folder} ({time.perf_counter() - start:.1f} s)")
        RunFolder.current().discard()  # nothing was made
        return
    dm = build_datamodule(cfg, prepare_only_ok=True, force=cfg.force)
    if cfg.format is not None and getattr(dm, "prepare_only", False):
        raise ConfigError(f"format={cfg.format} converts one dataset; run `jepa-prepare data=<name> format={cfg.format} output=...` per dataset.")
    if cfg.get("resize") is not None and cfg.format != "litdata":
        raise ConfigError(f"resize={cfg.resize} only applies to format=litdata (it sets the stored short side); "
                         "add format=litdata output=<where>, or leave resize unset.")
    if cfg.instructions:
        from ..formats.imagenet import manual_instructions

        print(console_text(manual_instructions(dm.folder)))
        RunFolder.current().discard()  # nothing was made
        return
    start = time.perf_counter()
    RunFolder.work_started()
    dm.prepare_data()
    print(f"{dm.spec.name}: ready and verified at {shown_folder(dm)} ({time.perf_counter() - start:.1f} s)")
    if cfg.format == "litdata":
        from ..streaming import convert_to_litdata

        convert_to_litdata(dm, cfg.output, resize=cfg.get("resize"), quality=cfg.get("quality"))
        print(f"{dm.spec.name}: LitData chunks at {cfg.output} (read them with data.format=litdata "
              f"data.input={cfg.output})", file=sys.stderr)
    elif cfg.format is not None:
        raise ConfigError(choice_message(cfg.format, ["litdata"], "format", note=" (or leave it unset)"))


@user_facing
def verify_task(cfg: DictConfig) -> None:
    from ..preparation import verify

    dm = build_datamodule(cfg)
    report, unrecorded = verify(dm.data, dm.fix_action(), full=cfg.full)
    print(f"{dm.spec.name} at {shown_folder(dm)}")
    print(console_text(report.table(terms=None)))
    if not report.ok:  # its stamp is gone: the next prepare_data checks again instead of trusting it
        bad = ", ".join(c.name for c in report.failures)
        return _fail(console_text(f"{dm.spec.name} failed {len(report.failures)} check(s) ({bad}); {report.fix(terms=None)}."), 1)
    if unrecorded is not None:
        warnings.warn(Notice(f"{dm.folder} {unrecorded}: the stamp that lets later runs skip this check was not "
                             "written."), stacklevel=2)
    print(console_text(f"ok: {dm.spec.name} is {report.verdict()}"))


@user_facing
def fit_task(cfg: DictConfig) -> dict[str, Any]:
    started = time.perf_counter()
    import lightning

    lightning_logs_through_hydra()

    from .interrupt import SaveOnInterrupt
    from .fitting import (FitSummary, PlainTrainingProgress, already_complete, build_model, fit_callbacks,
                          step_limit_options)
    from ..progress import mode as progress_mode

    lightning.seed_everything(cfg.seed, workers=True, verbose=False)
    # Everything that needs no data first (masks, model, trainer): a bad setting fails in a
    # second with one sentence, not after a download and a model summary.
    dm = build_datamodule(cfg)
    check_masks_for_jepa(dm)
    model = build_model(cfg, dm)
    check_checkpoint_fits(cfg.ckpt_path, model)
    summary = FitSummary(Path(hydra.core.hydra_config.HydraConfig.get().runtime.output_dir),
                         mean=dm.spec.mean, std=dm.spec.std, patch_size=dm.hparams.patch_size, started=started,
                         mask=getattr(dm, "mask_generator", None))
    callbacks: list[Any] = [summary, *fit_callbacks(cfg)]
    options: dict[str, Any] = step_limit_options(cfg, typed_overrides())
    if "enable_progress_bar" not in cfg.trainer and progress_mode(None) == "lines":
        # Lightning's bar redraws with carriage returns; a log gets plain lines instead.
        callbacks.append(PlainTrainingProgress())
        options["enable_progress_bar"] = False
    interrupt = SaveOnInterrupt(command=continue_command)
    callbacks.append(interrupt)
    trainer = build_trainer(cfg, callbacks, **options)
    RunFolder.work_started()
    dm.prepare_data()
    dm.setup("fit")
    trainer.fit(model, datamodule=dm, ckpt_path=cfg.ckpt_path)
    if interrupt.signal_name is not None:  # saved and stopped: the summary, then the signal's exit status
        summary.stopped = f"{interrupt.signal_name} (resumable: {interrupt.checkpoint})"
        if trainer.is_global_zero:
            summary.report(dm, model, {}, trainer)
            print(f"continue with: {continue_command(interrupt.checkpoint)}")
        raise SystemExit(128 + getattr(signal, interrupt.signal_name))
    if cfg.ckpt_path and summary.steps == 0:
        if trainer.is_global_zero:
            print(already_complete(trainer, cfg.ckpt_path))
        return {}
    metrics = trainer.validate(model, datamodule=dm, verbose=False)
    if not trainer.is_global_zero:
        return {}
    return summary.report(dm, model, metrics[0] if metrics else {}, trainer)


def continue_command(checkpoint: str) -> str:
    """This run's own command line, with ``ckpt_path=<checkpoint>`` in place of any earlier one."""
    kept = [word for word in typed_overrides() or () if typed_key(word) != "ckpt_path"]
    return " ".join(shlex.quote(word) for word in ["jepa-fit", *kept, f"ckpt_path={checkpoint}"])


@user_facing
def bench_task(cfg: DictConfig) -> dict[str, Any]:
    from ..bench.run import run_bench

    RunFolder.work_started()
    if cfg.bench.get("mode") == "sources":  # bench=sources: one set of images in each storage form
        from ..bench.sources import run_sources

        return run_sources(cfg)
    return run_bench(cfg)


@user_facing
def datasets_task(cfg: DictConfig) -> None:
    from .inventory import print_inventory

    print_inventory(cfg)


# ------------------------------------------------------------ console entry points
def _entry(command: str, task: Callable[[DictConfig], Any]) -> Callable[[], Any]:
    def job(cfg: DictConfig) -> Any:
        return task(cfg)

    # Hydra names the job after the last part of the task's module: runs then land in
    # outputs/<command>/<time> instead of outputs/apps/<time>. (Appending to sys.argv instead
    # breaks argparse when flags such as --cfg sit between overrides; argv_without_run_folder
    # inserts its settings before the first override for that reason.)
    job.__module__ = f"jepa_datamodules.{command}"
    job.__qualname__ = job.__name__ = command.replace("-", "_")
    main = hydra.main(**CONFIG)(job)
    if command in NO_RUN_FOLDER_COMMANDS:
        inner = main

        def main() -> Any:
            sys.argv = argv_without_run_folder(sys.argv, command)
            return inner()

    return _refuse_mistakes(main)


def _refuse_mistakes(main: Callable[[], Any]) -> Callable[[], Any]:
    """Check the command line before Hydra composes it (``overrides.py``): each mistyped group
    option, key or environment setting is one ``error:`` sentence, and the exit status 2."""

    @functools.wraps(main)
    def wrapper() -> Any:
        from .overrides import command_line_problems

        problems = command_line_problems(sys.argv, {"config_module": "jepa_datamodules.conf", **CONFIG})
        for problem in problems:  # one sentence per mistake
            print(f"error: {console_text(problem)}", file=sys.stderr)
        if problems:
            sys.exit(2)
        result = main()
        Sweep.report()
        return result

    return wrapper


register_help()  # conf/config.yaml's hydra.help.template is ${jepa_help:${hydra.job.name}}


prepare = _entry("jepa-prepare", prepare_task)
verify = _entry("jepa-verify", verify_task)
fit = _entry("jepa-fit", fit_task)
bench = _entry("jepa-bench", bench_task)
datasets = _entry("jepa-datasets", datasets_task)
