"""The console scripts: each is a Hydra app over the same ``conf/config.yaml``.

``jepa-prepare`` downloads (or generates) and verifies (and converts to LitData with
``format=litdata output=...``), ``jepa-verify`` only verifies and prints the report,
``jepa-fit`` trains the tiny JEPA, ``jepa-bench`` measures the input pipeline against a
plain baseline, ``jepa-datasets`` shows the catalog and what is on disk. Overrides, ``--multirun`` and
``--cfg job`` work as in any Hydra app. A mistake of the user's (bad value, no network,
damaged file) ends with one ``error:`` sentence and exit status 2 (1 for a failed
verification), never a traceback.

What a run leaves behind (``_entry`` and ``_RunFolder``): ``jepa-verify`` and ``jepa-datasets``
make nothing, so Hydra is told to write no run folder for them (``hydra.run.dir=.``, no
``.hydra/``, logging to the terminal only). ``jepa-prepare``, ``jepa-fit`` and ``jepa-bench``
keep Hydra's ``outputs/<command>/<time>`` with its ``<command>.log``, which also receives the
command's error or traceback. Hydra creates that folder before the command starts; when
the config is refused before any work began, the command removes it again (only Hydra's own
``.hydra/`` and the log, never anything else), so a refused config (a bad value, a dataset the
command cannot use) leaves no empty run behind.

This module imports neither torch nor Lightning (nor the package's modules that do) until a
command actually runs: ``--help`` and a refused override answer in well under a second.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import shutil
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import hydra
from hydra.errors import InstantiationException
from omegaconf import DictConfig, OmegaConf

CONFIG = {"version_base": "1.3", "config_path": "pkg://jepa_datamodules.conf", "config_name": "config"}


def _user_errors() -> tuple[type[BaseException], ...]:
    from .download import DownloadError
    from .readers import FormatError
    from .verify import VerificationError

    errors: list[type[BaseException]] = [ValueError, DownloadError, FormatError, VerificationError, FileNotFoundError]
    try:
        from .imagenet import ImageNetSetupError

        errors.append(ImageNetSetupError)
    except ImportError:
        pass
    return tuple(errors)


def _fail(message: str, status: int = 2) -> None:
    print(f"error: {message}", file=sys.stderr)
    _RunFolder.current().failed(f"error: {message}")
    sys.exit(status)


# -------------------------------------------------------------- what a run leaves behind
class _RunFolder:
    """The Hydra run folder of the command being run, and what to do with it on failure."""

    _started = False

    def __init__(self, path: Path | None, log_name: str | None):
        self.path, self.log_name = path, log_name

    @classmethod
    def current(cls) -> _RunFolder:
        try:
            from hydra.core.hydra_config import HydraConfig

            hydra_cfg = HydraConfig.get()
        except ValueError:  # not inside a Hydra app (a task called from Python)
            return cls(None, None)
        if hydra_cfg.output_subdir is None:  # jepa-verify, jepa-datasets: no run folder at all
            return cls(None, None)
        return cls(Path(hydra_cfg.runtime.output_dir), f"{hydra_cfg.job.name}.log")

    def discard(self) -> None:
        """The command ended without making anything: remove the run folder (as for a refused config)."""
        if self.path is not None and not _RunFolder._started:
            self._remove()

    @classmethod
    def work_started(cls) -> None:
        """The config was accepted and the command began its work: from now on a failure is the
        run's (kept, logged), not a refused config (folder removed)."""
        cls._started = True

    def failed(self, message: str, exc_info: Any = None) -> None:
        if self.path is None:
            return
        if not _RunFolder._started:
            self._remove()
            return
        record = logging.LogRecord("jepa_datamodules", logging.ERROR, __file__, 0, message, None, exc_info)
        for handler in logging.getLogger().handlers:
            if isinstance(handler, logging.FileHandler):  # the run's log; the terminal has it already
                handler.handle(record)

    def _remove(self) -> None:
        """Remove Hydra's own files and then the folder, only if nothing else is in it."""
        for handler in list(logging.getLogger().handlers):
            if isinstance(handler, logging.FileHandler) and Path(handler.baseFilename).parent == self.path:
                logging.getLogger().removeHandler(handler)
                handler.close()
        shutil.rmtree(self.path / ".hydra", ignore_errors=True)
        (self.path / self.log_name).unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # not empty (or the current directory): leave it
            self.path.rmdir()
            # outputs/<command>/ too, if this run was its only one
            if self.path.parent.name == self.log_name[:-len(".log")]:
                self.path.parent.rmdir()


@contextlib.contextmanager
def _known_noise_filtered():
    """Silence, for the duration of a command only, what our commands trigger in dependencies
    and a user cannot act on: Lightning's adverts ("Tip: ... litlogger / litmodels"), its
    tensorboardX notice (we log to CSV on purpose) and torch's ``LeafSpec`` deprecation that
    Lightning's own code triggers. The user's code, run outside our commands, sees them all."""

    def not_an_advert(record: logging.LogRecord) -> bool:
        return "Tip: For seamless cloud" not in str(record.msg)

    loggers = [logging.getLogger(f"lightning.{part}.utilities.rank_zero") for part in ("pytorch", "fabric")]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Starting from v1\.9\.0, `tensorboardX` has been removed")
        warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
        for logger in loggers:
            logger.addFilter(not_an_advert)
        try:
            yield
        finally:
            for logger in loggers:
                logger.removeFilter(not_an_advert)


def user_facing(task: Callable[[DictConfig], Any]) -> Callable[[DictConfig], Any]:
    """Turn the package's own errors into one sentence on stderr and a non-zero exit."""

    @functools.wraps(task)
    def wrapper(cfg: DictConfig) -> Any:
        _RunFolder._started = False  # each job of a --multirun starts refused-until-accepted
        try:
            with _known_noise_filtered():
                return task(cfg)
        except InstantiationException as error:
            cause = error.__cause__
            if isinstance(cause, _user_errors()):
                _fail(str(cause))
            _RunFolder.current().failed(f"{type(error).__name__}: {error}", sys.exc_info())
            raise
        except _user_errors() as error:
            _fail(str(error), 1 if type(error).__name__ == "VerificationError" else 2)
        except Exception as error:  # a bug, not the user's mistake: Hydra prints the traceback
            _RunFolder.current().failed(f"{type(error).__name__}: {error}", sys.exc_info())
            raise

    return wrapper


def build_datamodule(cfg: DictConfig, prepare_only_ok: bool = False, **overrides: Any):
    dm = hydra.utils.instantiate(cfg.data, **overrides)
    if getattr(dm, "prepare_only", False) and not prepare_only_ok:
        raise ValueError(f"data={dm.spec.name} only works with jepa-prepare; pick one dataset (e.g. data=cifar10) for this command.")
    return dm


def _lightning_logs_through_hydra() -> None:
    """Lightning prints its messages through its own stderr handler *and* passes them on to the
    root logger, which Hydra has pointed at the terminal and the run's log: every line twice.
    Inside our commands they go through Hydra's handlers only (so they reach the run's log)."""
    if logging.getLogger().handlers:
        lightning_logger = logging.getLogger("lightning")
        for handler in list(lightning_logger.handlers):
            if type(handler) is logging.StreamHandler:
                lightning_logger.removeHandler(handler)


# --------------------------------------------------------------------- the tasks
@user_facing
def prepare_task(cfg: DictConfig) -> None:
    dm = build_datamodule(cfg, prepare_only_ok=True, force=cfg.force)
    if cfg.format is not None and getattr(dm, "prepare_only", False):
        raise ValueError(f"format={cfg.format} converts one dataset; run `jepa-prepare data=<name> format={cfg.format} output=...` per dataset.")
    if cfg.instructions:
        from .imagenet import manual_instructions

        print(manual_instructions(dm.folder))
        _RunFolder.current().discard()  # nothing was made
        return
    start = time.perf_counter()
    _RunFolder.work_started()
    dm.prepare_data()
    print(f"{dm.spec.name}: ready and verified at {dm.folder} ({time.perf_counter() - start:.1f} s)")
    if cfg.format == "litdata":
        from .streaming import convert_to_litdata

        convert_to_litdata(dm, cfg.output)
    elif cfg.format is not None:
        raise ValueError(f"Unknown value '{cfg.format}' for format. Valid values are {{litdata}} (or leave it unset).")


@user_facing
def verify_task(cfg: DictConfig) -> None:
    dm = build_datamodule(cfg)
    report = dm.verify(full=cfg.full)
    print(f"{dm.spec.name} at {dm.folder}")
    print(report.table())
    if not report.ok:
        from .verify import remove_stamp

        remove_stamp(dm.folder)  # the next prepare_data checks again instead of trusting an old stamp
        bad = ", ".join(c.name for c in report.failures)
        _fail(f"{dm.spec.name} failed {len(report.failures)} check(s) ({bad}); {report.fix()}.", 1)
    from .verify import write_stamp

    write_stamp(dm.folder, dm.spec, report, dm.tracked_files())
    print(f"ok: {dm.spec.name} is complete and intact")


@user_facing
def fit_task(cfg: DictConfig) -> dict[str, Any]:
    started = time.perf_counter()
    import lightning

    _lightning_logs_through_hydra()

    from .fitting import FitSummary, PlainTrainingProgress, build_model
    from .progress import mode as progress_mode

    lightning.seed_everything(cfg.seed, workers=True, verbose=False)
    dm = build_datamodule(cfg)
    _RunFolder.work_started()
    dm.prepare_data()
    dm.setup("fit")
    model = build_model(cfg, dm)
    summary = FitSummary(Path(hydra.core.hydra_config.HydraConfig.get().runtime.output_dir),
                         mean=dm.spec.mean, std=dm.spec.std, patch_size=dm.hparams.patch_size, started=started,
                         mask=getattr(dm, "mask_generator", None))
    callbacks: list[Any] = [summary]
    options: dict[str, Any] = {}
    if "enable_progress_bar" not in cfg.trainer and progress_mode(None) == "lines":
        # Lightning's bar redraws with carriage returns; a log gets plain lines instead.
        callbacks.append(PlainTrainingProgress())
        options["enable_progress_bar"] = False
    trainer = hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, **options)
    trainer.fit(model, datamodule=dm, ckpt_path=cfg.ckpt_path)
    metrics = trainer.validate(model, datamodule=dm, verbose=False)
    if not trainer.is_global_zero:
        return {}
    return summary.report(dm, model, metrics[0] if metrics else {}, trainer)


@user_facing
def bench_task(cfg: DictConfig) -> dict[str, Any]:
    from .bench import run_bench

    _RunFolder.work_started()

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
    # outputs/<command>/<time> instead of outputs/apps/<time>. (Editing sys.argv instead
    # breaks argparse when flags such as --cfg sit between overrides.)
    job.__module__ = f"jepa_datamodules.{command}"
    job.__qualname__ = job.__name__ = command.replace("-", "_")
    main = hydra.main(**CONFIG)(job)
    if command not in _NO_RUN_FOLDER_COMMANDS:
        return main

    def without_run_folder() -> Any:
        # Our settings go before the user's first override (so theirs win, later on the line)
        # and never between a flag and its value (argparse takes overrides as one block).
        argv = sys.argv
        first = next((i for i, arg in enumerate(argv[1:], 1) if "=" in arg and not arg.startswith("-")), len(argv))
        ours = list(_NO_RUN_FOLDER)
        if "-m" in argv or "--multirun" in argv:
            # Hydra's sweeper always writes multirun.yaml into the sweep folder: a temporary one.
            import atexit
            import tempfile

            sweep = tempfile.mkdtemp(prefix=f"{command}-multirun-")
            atexit.register(shutil.rmtree, sweep, True)
            ours.append(f"hydra.sweep.dir={sweep}")
        sys.argv = [*argv[:first], *ours, *argv[first:]]
        return main()

    return without_run_folder


# Commands that make nothing in a run folder, and the Hydra settings that stop it being made:
# no outputs/<command>/<time>, no .hydra/, no <command>.log; logging goes to the terminal only.
_NO_RUN_FOLDER_COMMANDS = ("jepa-verify", "jepa-datasets")
_NO_RUN_FOLDER = ("hydra.run.dir=.", "hydra.sweep.subdir=.", "hydra.output_subdir=null", "hydra/job_logging=stdout")


# ------------------------------------------------------------------------------ --help
# string.Template text (Hydra substitutes $APP_CONFIG_GROUPS): a literal dollar is written $$.
_GROUPS = """
== Config groups (group=option) ==
$APP_CONFIG_GROUPS
"""
_KEYS = """
== Most used keys (key=value) ==
{keys}

`{command} --cfg job` prints every key with its value after your overrides;
`{command} --hydra-help` lists Hydra's own flags (--multirun, --cfg, ...).
"""

_COMMON_KEYS = {
    "paths.data_dir=DIR": "where datasets live [$$JEPA_DATA_DIR, else ./data]",
    "paths.log_dir=DIR": "where runs are written [$$JEPA_LOG_DIR, else ./outputs]",
}

HELP: dict[str, tuple[str, dict[str, str]]] = {
    "jepa-fit": (
        "Trains the tiny JEPA of this package on a dataset's masked batches, to check that data, labels and "
        "masks flow end to end: downloads (or generates) and verifies the dataset, trains with Lightning, runs a "
        "last validation and prints a summary (loss, online linear-probe accuracy against chance with its "
        "validation size, images/s, wall time, checkpoint). The run folder outputs/jepa-fit/<time> holds the log, "
        "checkpoints, summary.json, masks.png (the first batch's masks) and training.png (loss and probe curves).",
        {"data=NAME": "dataset: synthetic (default, offline), cifar10, cifar100, stl10, imagenet, imagenet100",
         "mask=NAME": "multiblock (I-JEPA, default), hierarchical (H-JEPA levels), none",
         "trainer=NAME": "cpu (default), gpu, ddp (all visible devices)",
         "trainer.max_steps=N": "stop after N optimizer steps [-1: trainer.max_epochs decides]",
         "trainer.max_epochs=N": "epochs to train [1]",
         "data.batch_size=N": "images per device per step",
         "data.num_workers=N": "loader processes",
         "data.image_size=PX data.patch_size=PX": "view size and patch side (the patch grid is their ratio)",
         "ckpt_path=FILE": "resume from a Lightning checkpoint (mid-epoch resume is exact)",
         **_COMMON_KEYS}),
    "jepa-prepare": (
        "Downloads (or generates) a dataset, checks every archive's md5, extracts it atomically and verifies "
        "splits and class counts, so that later runs start at once. Resumes interrupted downloads, tries "
        "mirrors first, and waits for another process preparing the same dataset. ImageNet is never downloaded: "
        "instructions=true prints the manual steps. format=litdata output=... also converts the prepared dataset "
        "into LitData chunks.",
        {"data=NAME": "synthetic, cifar10, cifar100, stl10, imagenet, imagenet100, all-auto (the three auto-download ones)",
         "force=true": "fetch and extract again even if verified",
         "instructions=true": "print ImageNet's manual steps and stop",
         "data.mirrors=[URL,...]": "base URLs tried before upstream (also $$JEPA_DATA_MIRROR)",
         "data.download=false": "never touch the network; use archives already in place",
         "format=litdata output=DIR|s3://...": "convert to LitData chunks after preparing",
         **_COMMON_KEYS}),
    "jepa-verify": (
        "Checks a prepared dataset without changing it: archive checksums, expected files, per-split and "
        "per-class counts, and that a sample of images decodes. Prints a table (check, expected, found, ok) and "
        "exits with status 1 naming what failed and the fix. Writes no run folder.",
        {"data=NAME": "the dataset to check",
         "full=true": "re-hash every archive and decode every image",
         **_COMMON_KEYS}),
    "jepa-bench": (
        "Measures the input pipeline: in one run on the same images, a plain torchvision baseline and this "
        "package's train_dataloader() with masks; prints images/s, CPU ms per image, time to first batch, peak "
        "memory of the loader processes and the mask collator's cost, and writes bench.json into the run folder. "
        "Without the real data it builds a stand-in in the dataset's own format.",
        {"data=NAME": "the dataset whose loader is measured",
         "bench.batches=N": "timed batches per loader",
         "bench.synthetic_like=NAME": "measure on a generated stand-in in that dataset's format (e.g. imagenet)",
         "bench.standin_images=N": "images in the stand-in",
         "data.num_workers=N data.batch_size=N": "loader settings, the same for both loaders",
         **_COMMON_KEYS}),
    "jepa-datasets": (
        "Lists the catalog: every dataset with its archive and extracted size, images per split, classes and "
        "resolution, what of it is on disk (absent, downloading, downloaded, verified), and the free space of the "
        "data folder against what each plan needs. Touches no dataset and writes no run folder.",
        {"paths.data_dir=DIR": _COMMON_KEYS["paths.data_dir=DIR"]}),
}


def _help_template(command: str) -> str:
    """Hydra's --help template for ``command`` (Hydra fills in $APP_CONFIG_GROUPS)."""
    paragraph, keys = HELP.get(command, (f"{command}: a jepa_datamodules command.", _COMMON_KEYS))
    width = max(len(key) for key in keys)
    listed = "\n".join(f"  {key.ljust(width)}  {meaning}" for key, meaning in keys.items())
    import textwrap

    usage = f"Usage: {command} [group=option ...] [key=value ...] [--multirun] [--cfg job]"
    text = textwrap.fill(f"{command}: {paragraph}", width=100, break_on_hyphens=False)
    groups = "" if command == "jepa-datasets" else _GROUPS  # it reads no group
    return text + "\n\n" + usage + "\n" + groups + _KEYS.format(keys=listed, command=command)


# conf/config.yaml sets hydra.help.template to ${jepa_help:${hydra.job.name}}.
OmegaConf.register_new_resolver("jepa_help", _help_template, replace=True)


prepare = _entry("jepa-prepare", prepare_task)
verify = _entry("jepa-verify", verify_task)
fit = _entry("jepa-fit", fit_task)
bench = _entry("jepa-bench", bench_task)
datasets = _entry("jepa-datasets", datasets_task)
