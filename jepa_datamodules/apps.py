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
import sys
import time
from pathlib import Path
from typing import Any, Callable

import hydra
from hydra.errors import InstantiationException
from omegaconf import DictConfig

from .console import (
    NO_RUN_FOLDER_COMMANDS,
    RunFolder,
    argv_without_run_folder,
    known_noise_filtered,
    lightning_logs_through_hydra,
    register_help,
)

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
    RunFolder.current().failed(f"error: {message}")
    sys.exit(status)


def user_facing(task: Callable[[DictConfig], Any]) -> Callable[[DictConfig], Any]:
    """Turn the package's own errors into one sentence on stderr and a non-zero exit."""

    @functools.wraps(task)
    def wrapper(cfg: DictConfig) -> Any:
        RunFolder.new_job()
        try:
            with known_noise_filtered():
                return task(cfg)
        except InstantiationException as error:
            cause = error.__cause__
            if isinstance(cause, _user_errors()):
                _fail(str(cause))
            RunFolder.current().failed(f"{type(error).__name__}: {error}", sys.exc_info())
            raise
        except _user_errors() as error:
            _fail(str(error), 1 if type(error).__name__ == "VerificationError" else 2)
        except Exception as error:  # a bug, not the user's mistake: Hydra prints the traceback
            RunFolder.current().failed(f"{type(error).__name__}: {error}", sys.exc_info())
            raise

    return wrapper


def build_datamodule(cfg: DictConfig, prepare_only_ok: bool = False, **overrides: Any):
    dm = hydra.utils.instantiate(cfg.data, **overrides)
    if getattr(dm, "prepare_only", False) and not prepare_only_ok:
        raise ValueError(f"data={dm.spec.name} only works with jepa-prepare; pick one dataset (e.g. data=cifar10) for this command.")
    return dm


# --------------------------------------------------------------------- the tasks
@user_facing
def prepare_task(cfg: DictConfig) -> None:
    dm = build_datamodule(cfg, prepare_only_ok=True, force=cfg.force)
    if cfg.format is not None and getattr(dm, "prepare_only", False):
        raise ValueError(f"format={cfg.format} converts one dataset; run `jepa-prepare data=<name> format={cfg.format} output=...` per dataset.")
    if cfg.instructions:
        from .imagenet import manual_instructions

        print(manual_instructions(dm.folder))
        RunFolder.current().discard()  # nothing was made
        return
    start = time.perf_counter()
    RunFolder.work_started()
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

    lightning_logs_through_hydra()

    from .fitting import FitSummary, PlainTrainingProgress, build_model
    from .progress import mode as progress_mode

    lightning.seed_everything(cfg.seed, workers=True, verbose=False)
    dm = build_datamodule(cfg)
    RunFolder.work_started()
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

    RunFolder.work_started()

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
    if command not in NO_RUN_FOLDER_COMMANDS:
        return main

    def without_run_folder() -> Any:
        sys.argv = argv_without_run_folder(sys.argv, command)
        return main()

    return without_run_folder


register_help()  # conf/config.yaml's hydra.help.template is ${jepa_help:${hydra.job.name}}


prepare = _entry("jepa-prepare", prepare_task)
verify = _entry("jepa-verify", verify_task)
fit = _entry("jepa-fit", fit_task)
bench = _entry("jepa-bench", bench_task)
datasets = _entry("jepa-datasets", datasets_task)
