"""What the console scripts show and leave behind: their --help, their run folder, and the
dependency noise they keep out of a researcher's log.

- ``--help``: ``help_template`` gives each command a paragraph on what it does, the config
  groups with their options (Hydra fills them in) and the most used keys.
- Run folders: ``jepa-verify`` and ``jepa-datasets`` make nothing, so Hydra is told to write no
  run folder for them (``argv_without_run_folder``: ``hydra.run.dir=.``, no ``.hydra/``, logging
  to the terminal only). ``jepa-prepare``, ``jepa-fit`` and ``jepa-bench`` keep Hydra's
  ``outputs/<command>/<time>`` with its ``<command>.log``, which also receives the command's
  error or traceback (``RunFolder.failed``). Hydra creates that folder before the command
  starts; a config refused before the command began its work (``RunFolder.work_started``)
  removes it again, Hydra's own ``.hydra/`` and log only, never anything else, so a bad value
  or a dataset the command cannot use leaves no empty run behind.
- Noise: ``known_noise_filtered`` drops Lightning's adverts and the dependency deprecation
  warnings a user cannot act on, and (unless ``verbose=true``) the framework's INFO lines and
  model summary, for the duration of a command only (never at import, never for the user's
  own code); the package's log warnings print as ``warning: <sentence>``, once each;
  ``lightning_logs_through_hydra`` prints Lightning's lines once.

Imports neither torch nor Lightning.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import shutil
import sys
import tempfile
import textwrap
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ..notices import Notice
from .terms import console_text


class RunFolder:
    """The Hydra run folder of the command being run, and what to do with it on failure."""

    _started = False

    def __init__(self, path: Path | None, log_name: str | None):
        self.path, self.log_name = path, log_name

    @classmethod
    def current(cls) -> RunFolder:
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
        if self.path is not None and not RunFolder._started:
            self._remove()

    @classmethod
    def new_job(cls) -> None:
        """A job begins (each job of a --multirun too): refused until it calls ``work_started``."""
        cls._started = False

    @classmethod
    def work_started(cls) -> None:
        """The config was accepted and the command began its work: from now on a failure is the
        run's (kept, logged), not a refused config (folder removed)."""
        cls._started = True

    def failed(self, message: str, exc_info: Any = None) -> None:
        if self.path is None:
            return
        if not RunFolder._started:
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


# Loggers whose INFO lines are the framework talking about itself ("GPU available: False", the
# model summary table, "`Trainer.fit` stopped", LitData's "max_cache_size is unset ..."): off in
# our commands unless verbose=true; their warnings and errors still show.
CHATTY_LOGGERS = ("lightning.pytorch", "lightning.fabric", "litdata")
# Warnings about settings our commands chose, not the user: short smoke runs have fewer steps
# than Lightning's logging interval, which is what they are for.
_OUR_SETTINGS_WARNINGS = (r"The number of training batches \(\d+\) is smaller than the logging interval",)


@contextlib.contextmanager
def known_noise_filtered(verbose: bool = False) -> Iterator[None]:
    """Silence, for the duration of a command only, what our commands trigger in dependencies
    and a user cannot act on: Lightning's adverts ("Tip: ... litlogger / litmodels"), its
    tensorboardX notice (we log to CSV on purpose) and torch's ``LeafSpec`` deprecation that
    Lightning's own code triggers. Unless ``verbose`` (``verbose=true`` on the command line), also
    the framework's INFO lines (:data:`CHATTY_LOGGERS`) and the logging-interval warning of short
    runs. The package's own log warnings print as one ``warning: <sentence>`` line, once each.
    The user's code, run outside our commands, sees them all."""

    def not_an_advert(record: logging.LogRecord) -> bool:
        return "Tip: For seamless cloud" not in str(record.msg)

    def not_framework_info(record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or not record.name.startswith(CHATTY_LOGGERS)

    loggers = [logging.getLogger(f"lightning.{part}.utilities.rank_zero") for part in ("pytorch", "fabric")]
    # On the root logger's handlers (the terminal and the run's log), not on the loggers: Lightning
    # sets its loggers' level to INFO when it is imported, which happens inside the command.
    handlers = [] if verbose else list(logging.getLogger().handlers)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Starting from v1\.9\.0, `tensorboardX` has been removed")
        warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
        for message in ([] if verbose else _OUR_SETTINGS_WARNINGS):
            warnings.filterwarnings("ignore", message=message)
        warnings.showwarning = _notices_as_lines(warnings.showwarning)  # catch_warnings puts it back
        for logger in loggers:
            logger.addFilter(not_an_advert)
        for handler in handlers:
            handler.addFilter(not_framework_info)
        restore = _package_log_lines()
        try:
            yield
        finally:
            restore()
            for logger in loggers:
                logger.removeFilter(not_an_advert)
            for handler in handlers:
                handler.removeFilter(not_framework_info)


class _PackageLines(logging.Formatter):
    """The terminal's formatter for the package's own records: ``warning: <message>`` (``error:``
    for errors, the bare message for INFO), like the ``error:`` lines; every other logger's records
    keep the formatter the terminal had (Hydra's ``[time][name][LEVEL] - message``)."""

    def __init__(self, other: logging.Formatter | None):
        super().__init__()
        self.other = other or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        if not record.name.startswith("jepa_datamodules"):
            return self.other.format(record)
        prefix = "" if record.levelno < logging.WARNING else "warning: " if record.levelno < logging.ERROR else "error: "
        return prefix + record.getMessage()


def _package_log_lines() -> Callable[[], None]:
    """Point the terminal handlers of the root logger at :class:`_PackageLines` and drop a
    package line already printed; returns what puts them back."""
    first: dict[str, logging.LogRecord] = {}  # message -> the record that printed it (on every handler)

    def once(record: logging.LogRecord) -> bool:
        if not record.name.startswith("jepa_datamodules"):
            return True
        return first.setdefault(f"{record.levelno}:{record.getMessage()}", record) is record

    terminals = [h for h in logging.getLogger().handlers
                 if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)]
    formatters = [h.formatter for h in terminals]
    for handler in terminals:
        handler.setFormatter(_PackageLines(handler.formatter))
        handler.addFilter(once)

    def restore() -> None:
        for handler, formatter in zip(terminals, formatters):
            handler.setFormatter(formatter)
            handler.removeFilter(once)

    return restore


def _notices_as_lines(show: Callable[..., None]) -> Callable[..., None]:
    """``warnings.showwarning`` that prints a :class:`Notice` as one ``warning: <sentence>`` line
    on stderr, like the ``error:`` lines, and leaves every other warning to ``show``."""

    def show_notice(message: Warning | str, category: type[Warning], *args: Any, **kwargs: Any) -> None:
        if issubclass(category, Notice):
            print(f"warning: {console_text(message)}", file=sys.stderr, flush=True)
        else:
            show(message, category, *args, **kwargs)

    return show_notice


def lightning_logs_through_hydra() -> None:
    """Lightning prints its messages through its own stderr handler *and* passes them on to the
    root logger, which Hydra has pointed at the terminal and the run's log: every line twice.
    Inside our commands they go through Hydra's handlers only (so they reach the run's log)."""
    if logging.getLogger().handlers:
        lightning_logger = logging.getLogger("lightning")
        for handler in list(lightning_logger.handlers):
            if type(handler) is logging.StreamHandler:
                lightning_logger.removeHandler(handler)


# Commands that make nothing in a run folder, and the Hydra settings that stop it being made:
# no outputs/<command>/<time>, no .hydra/, no <command>.log; logging goes to the terminal only.
NO_RUN_FOLDER_COMMANDS = ("jepa-verify", "jepa-datasets")
_NO_RUN_FOLDER = ("hydra.run.dir=.", "hydra.sweep.subdir=.", "hydra.output_subdir=null", "hydra/job_logging=stdout")

def argv_without_run_folder(argv: list[str], command: str) -> list[str]:
    """``argv`` with the Hydra settings that stop ``command`` from making a run folder.

    They go before the user's first override, so the user's own (later on the line) win, and
    never between a flag and its value (argparse takes the overrides as one block). A
    ``--multirun`` gets a temporary sweep folder, removed at exit: Hydra's sweeper always writes
    ``multirun.yaml`` into it.
    """
    first = next((i for i, arg in enumerate(argv[1:], 1) if "=" in arg and not arg.startswith("-")), len(argv))
    ours = list(_NO_RUN_FOLDER)
    if "-m" in argv or "--multirun" in argv:
        sweep = tempfile.mkdtemp(prefix=f"{command}-multirun-")
        atexit.register(shutil.rmtree, sweep, True)
        ours.append(f"hydra.sweep.dir={sweep}")
    return [*argv[:first], *ours, *argv[first:]]


# ----------------------------------------------------------------------------------- --help
# The help text is a string.Template for Hydra: a literal dollar is written $$.
_GROUPS = """
== Config groups (group=option) ==
{groups}
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
        {"data=NAME": "a dataset of the data group above (synthetic: the default, offline)",
         "mask=NAME": "multiblock (I-JEPA, default), hierarchical (H-JEPA levels), none",
         "trainer=NAME": "cpu (default), gpu, ddp (all visible devices)",
         "trainer.max_steps=N": "stop after N optimizer steps [-1: trainer.max_epochs decides]",
         "trainer.max_epochs=N": "epochs to train [1]",
         "data.batch_size=N": "images per device per step",
         "data.num_workers=N": "loader processes [null: the CPUs this process may use, at most 8]",
         "verbose=true": "also the framework's INFO lines (devices, model summary)",
         "data.image_size=PX data.patch_size=PX": "view size and patch side (the patch grid is their ratio)",
         "ckpt_path=FILE": "resume from a Lightning checkpoint (mid-epoch resume is exact)",
         **_COMMON_KEYS}),
    "jepa-prepare": (
        "Downloads (or generates) a dataset, checks every archive's md5, extracts it atomically and verifies "
        "splits and class counts, so that later runs start at once. Resumes interrupted downloads, tries "
        "mirrors first, and waits for another process preparing the same dataset. ImageNet is never downloaded: "
        "instructions=true prints the manual steps. format=litdata output=... also converts the prepared dataset "
        "into LitData chunks.",
        {"data=NAME": "a dataset of the data group above; all-auto: every auto-download one in turn",
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


def group_options() -> dict[str, list[str]]:
    """``{group: [option, ...]}`` of the shipped conf folder. Files named ``_*``
    (``data/_base_.yaml``, the keys every data config shares) are not choices."""
    from importlib.resources import files

    groups = {}
    for group in sorted((p for p in files("jepa_datamodules.conf").iterdir() if p.is_dir()), key=lambda p: p.name):
        options = sorted(p.name[:-5] for p in group.iterdir() if p.name.endswith(".yaml") and not p.name.startswith("_"))
        if options and not group.name.startswith(("_", ".")):
            groups[group.name] = options
    return groups


def config_groups() -> str:
    """One line per config group with its options (:func:`group_options`), which is why Hydra's
    own ``$APP_CONFIG_GROUPS`` listing (it offers ``_base_``) is not used."""
    return "\n".join(f"{group}: {', '.join(options)}" for group, options in group_options().items())


def help_template(command: str) -> str:
    """Hydra's --help template for ``command``."""
    paragraph, keys = HELP.get(command, (f"{command}: a jepa_datamodules command.", _COMMON_KEYS))
    width = max(len(key) for key in keys)
    listed = "\n".join(f"  {key.ljust(width)}  {meaning}" for key, meaning in keys.items())
    usage = f"Usage: {command} [group=option ...] [key=value ...] [--multirun] [--cfg job]"
    text = textwrap.fill(f"{command}: {paragraph}", width=100, break_on_hyphens=False)
    groups = "" if command == "jepa-datasets" else _GROUPS.format(groups=config_groups())  # it reads no group
    return text + "\n\n" + usage + "\n" + groups + _KEYS.format(keys=listed, command=command)


def register_help() -> None:
    """Let conf/config.yaml's ``hydra.help.template: ${jepa_help:${hydra.job.name}}`` resolve."""
    from omegaconf import OmegaConf

    OmegaConf.register_new_resolver("jepa_help", help_template, replace=True)

