"""``jepa-eval``: kNN and linear-probe top-1 of a checkpoint's frozen features.

``jepa-eval data=<name> ckpt_path=<checkpoint>`` loads the checkpoint (``eval.model_class``
[``jepa_datamodules.TinyJEPA``]), extracts features of the labelled train split and the
evaluation split through an ``EvalDataModule`` (``eval.protocol``, ``eval.shots``,
``eval.subset``), then reports

* weighted-kNN top-1 (``eval.knn.k`` [20], ``eval.knn.temperature`` [0.07], DINO's), and
* linear-probe top-1: logistic regression trained on the train features, on the device
  (``eval.linear.*``),

each with chance (the most frequent evaluation class), a 95 % Wilson interval and a
one-sided binomial test, plus ``per_class.png`` (accuracy per class) and ``summary.json``
in the run folder. The feature-extraction speed (images/s) is in the summary.

Features come from a hook ``features(model, images) -> (batch, dim)``: by default
:func:`tinyjepa_features` (the tiny JEPA's target encoder, as its online probe reads it);
any LightningModule through ``+eval.features=<dotted path of such a callable>``. They are
cached per checkpoint (``<checkpoint>.features/`` beside it, or the user cache folder when
that cannot be written; ``eval.cache=false`` turns it off): a second evaluation of the same
checkpoint, data and settings reads them instead of running the model.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, Callable

import hydra
from omegaconf import DictConfig, OmegaConf

from .apps import _entry, build_datamodule, user_facing
from .console import HELP, RunFolder
from .terms import console_text
from ..errors import ConfigError

# torch, Lightning and the package's modules that import them are imported when a command
# runs, as in apps.py: --help and a refused override answer in well under a second.

DEFAULT_HOOK = "jepa_datamodules.cli.evaluate.tinyjepa_features"


def tinyjepa_features(model: Any, images: Any) -> Any:
    """The tiny JEPA's features: its target (EMA) encoder's layer-normed patch tokens, mean and
    standard deviation over patches (``tinyjepa.pooled_features``, what its online probe reads)."""
    import torch.nn.functional as F

    from .tinyjepa import pooled_features

    encoder = getattr(model, "target_encoder", None)
    if encoder is None:
        raise ConfigError(f"{type(model).__name__} has no target_encoder, so the default feature hook (the tiny JEPA's "
                         "target encoder) does not apply to it; pass +eval.features=<dotted path of a callable "
                         "(model, images) -> (batch, dim) features>.")
    tokens = encoder(images)
    return pooled_features(F.layer_norm(tokens, tokens.shape[-1:]))


def feature_hook(path: str | None, model: Any, ckpt_path: str) -> tuple[Callable[[Any, Any], Any], str]:
    """The hook named by ``+eval.features`` (or the default, when the model has what it reads),
    and its dotted name; a checkpoint with neither is one sentence."""
    if path:
        try:
            hook = hydra.utils.get_method(path)
        except Exception as error:  # noqa: BLE001 - any import failure is the user's path
            raise ConfigError(f"+eval.features={path} cannot be imported ({error}); allowed is the dotted path of a "
                             "callable (model, images) -> (batch, dim) features, e.g. mypackage.evaluation.features.") from None
        return hook, path
    if getattr(model, "target_encoder", None) is None:
        raise ConfigError(f"ckpt_path={ckpt_path} holds a {type(model).__name__} without a target_encoder, so the default "
                         "feature hook (the tiny JEPA's target encoder) does not apply; pass +eval.features=<dotted path "
                         "of a callable (model, images) -> (batch, dim) features>.")
    return tinyjepa_features, DEFAULT_HOOK


def load_checkpoint(ckpt_path: Any, model_class: str) -> Any:
    """``model_class.load_from_checkpoint(ckpt_path)`` on the CPU; a missing or foreign file is one sentence."""
    if not ckpt_path:
        raise ConfigError("jepa-eval needs a checkpoint: add ckpt_path=<a Lightning .ckpt file> (jepa-fit prints the one "
                         "it saved as 'checkpoint:').")
    path = Path(str(ckpt_path)).expanduser()
    if not path.is_file():
        raise ConfigError(f"ckpt_path={ckpt_path} does not exist; allowed is a Lightning .ckpt file.")
    try:
        cls = hydra.utils.get_class(model_class)
    except Exception as error:  # noqa: BLE001
        raise ConfigError(f"eval.model_class={model_class} cannot be imported ({error}); allowed is the dotted path of "
                         "the LightningModule class that saved the checkpoint.") from None
    try:
        return cls.load_from_checkpoint(str(path), map_location="cpu", weights_only=False)
    except Exception as error:  # noqa: BLE001 - a checkpoint of another model, or not a checkpoint
        raise ConfigError(f"ckpt_path={ckpt_path} could not be loaded as {cls.__name__} ({type(error).__name__}: "
                         f"{str(error)[:200]}); set eval.model_class=<the class that saved it>.") from None


def pick_device(setting: str) -> Any:
    import torch

    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(setting)
    except RuntimeError:
        raise ConfigError(f"eval.device={setting} is invalid; allowed are auto, cpu, cuda or cuda:<n>.") from None


def cache_folder(ckpt_path: Path) -> Path:
    """``<checkpoint>.features/`` beside the checkpoint, or the user cache folder where that cannot be written."""
    from ..storage.files import unwritable, user_cache_path

    beside = ckpt_path.parent / f"{ckpt_path.name}.features"
    if beside.is_dir() or unwritable(ckpt_path.parent) is None:
        return beside
    return user_cache_path("features", ckpt_path)


def build_eval_datamodule(cfg: DictConfig) -> Any:
    """The ``EvalDataModule`` of ``cfg.data`` with ``cfg.eval``'s protocol, shots and subset."""
    from ..evaluation.protocols import EvalDataModule

    settings = cfg.eval
    return EvalDataModule(build_datamodule(cfg), protocol=settings.protocol, shots=settings.shots,
                          subset=settings.subset, seed=settings.seed, batch_size=settings.batch_size,
                          num_workers=settings.num_workers)


@user_facing
def eval_task(cfg: DictConfig) -> dict[str, Any]:
    started = time.perf_counter()
    import torch

    from ..evaluation.features import FeatureCache, SplitFeatures, extract
    from ..evaluation.metrics import accuracy_report, check_knn_settings, knn_predict, train_linear_probe
    from ..storage.files import atomic_write_text
    from .fitting import chance_verdict

    settings = cfg.eval
    check_knn_settings(settings.knn.k, settings.knn.temperature)
    device = pick_device(str(settings.device))
    edm = build_eval_datamodule(cfg)
    model = load_checkpoint(cfg.ckpt_path, settings.model_class)
    hook, hook_name = feature_hook(settings.get("features"), model, cfg.ckpt_path)
    ckpt = Path(str(cfg.ckpt_path)).expanduser().resolve()
    RunFolder.work_started()
    edm.prepare_data()
    edm.setup()
    model.to(device).eval()
    cache = FeatureCache(cache_folder(ckpt)) if settings.cache else None
    dm = edm.datamodule
    # What the features depend on: the dataset and its views, the selection, the hook (not how they are loaded).
    loading = {"num_workers", "pin_memory", "persistent_workers", "prefetch_factor", "progress", "batch_size",
               "global_batch_size", "mask", "download", "mirrors", "retries", "timeout", "force"}
    data = {k: v for k, v in OmegaConf.to_container(cfg.data, resolve=True).items() if k not in loading}
    identity = {"data": data, "eval": edm.describe(), "hook": hook_name, "image_size": dm.hparams.image_size}
    splits: dict[str, SplitFeatures] = {}
    extracted: list[SplitFeatures] = []
    notes: list[str] = []
    for split in ("train", "eval"):
        key = FeatureCache.key(ckpt, {**identity, "split": split})
        cached = cache.load(key) if cache is not None else None
        if cached is None:
            cached = extract(model, hook, edm.loader(split), lambda b: edm.on_after_batch_transfer(b, 0), device)
            extracted.append(cached)
            if cache is not None:
                try:
                    cache.save(key, cached)
                except OSError as error:  # a cache that cannot be written costs time next run, not this result
                    notes.append(f"features not cached ({error.strerror or error})")
        splits[split] = cached
    train, evaluation = splits["train"], splits["eval"]
    classes = edm.num_classes
    knn = knn_predict(train.features.to(device), train.labels, evaluation.features.to(device), classes,
                      int(settings.knn.k), float(settings.knn.temperature), bool(settings.knn.standardize))
    linear = settings.linear
    probe = train_linear_probe(train.features.to(device), train.labels, classes, epochs=int(linear.epochs),
                               lr=float(linear.lr), weight_decay=float(linear.weight_decay),
                               batch_size=int(linear.batch_size), seed=int(settings.seed))
    with torch.no_grad():
        linear_predictions = probe(evaluation.features.to(device)).argmax(1)
    results = {"knn": accuracy_report(knn, evaluation.labels, classes),
               "linear": accuracy_report(linear_predictions, evaluation.labels, classes)}
    for report in results.values():
        report["verdict"] = chance_verdict(report["top1"], report["n"], report["chance"])["text"]
    seconds = sum(s.seconds for s in extracted)
    images = sum(len(s.labels) for s in extracted)
    run_dir = Path(hydra.core.hydra_config.HydraConfig.get().runtime.output_dir)
    summary = {
        **edm.describe(), "checkpoint": str(ckpt), "features": hook_name, "feature_dim": int(train.features.shape[1]),
        "device": str(device), "extraction_images_per_second": images / seconds if seconds else None,
        "extracted_images": images, "cache": str(cache.folder) if cache is not None else None,
        "knn_settings": {"k": int(settings.knn.k), "temperature": float(settings.knn.temperature),
                         "standardize": bool(settings.knn.standardize)},
        "linear_settings": OmegaConf.to_container(linear, resolve=True), **results,
    }
    try:
        summary["picture"] = str(per_class_picture(run_dir / "per_class.png", results, edm.classes))
    except ImportError:
        notes.append("no per_class.png: the picture needs matplotlib (pip install 'jepa-datamodules[pictures]')")
    summary["wall_time_s"] = time.perf_counter() - started
    atomic_write_text(run_dir / "summary.json", json.dumps(summary, indent=1))
    print(console_text(summary_text(summary, dm, notes)))  # library text (descriptions) may hold marks
    return summary


def summary_text(summary: dict[str, Any], dm: Any, notes: list[str]) -> str:
    def line(name: str, setting: str) -> str:
        report = summary[name]
        low, high = report["interval"]
        return (f"{report['top1']:.3f} (95 % interval {low:.3f}-{high:.3f}, {report['correct']:,} of {report['n']:,}; "
                f"{setting}): {report['verdict']}")

    selection = "".join(f", {key}={summary[key]}" for key in ("shots", "subset") if summary[key] is not None)
    speed = summary["extraction_images_per_second"]
    extraction = (f"{summary['extracted_images']:,} images at {speed:,.0f} images/s on {summary['device']}" if speed
                  else f"read from the cache ({summary['cache']})")
    knn, linear = summary["knn_settings"], summary["linear_settings"]
    knn_setting = f"k={knn['k']}, T={knn['temperature']}{', standardized' if knn['standardize'] else ''}"
    linear_setting = f"logistic regression, {linear['epochs']} epochs"
    return (
        f"\n== jepa-eval summary ==\n"
        f"dataset:        {summary['dataset']} ({dm.hparams.image_size}px), protocol {summary['protocol']}{selection}: "
        f"{summary['train']:,} labelled train / {summary['eval']:,} eval images, {summary['classes']} classes\n"
        f"checkpoint:     {summary['checkpoint']}\n"
        f"features:       {summary['feature_dim']}-d from {summary['features']}\n"
        f"extraction:     {extraction}\n"
        f"kNN top-1:      {line('knn', knn_setting)}\n"
        f"linear top-1:   {line('linear', linear_setting)}\n"
        + (f"picture:        {summary['picture']}\n" if "picture" in summary else "")
        + f"wall time:      {summary['wall_time_s']:.1f} s\n"
        + "".join(f"note:           {note}\n" for note in notes)
    )


def per_class_picture(path: Path, results: dict[str, Any], classes: list[str] | None) -> Path:
    """Bars of each class's kNN and linear accuracy, chance as a dashed line."""
    import matplotlib

    from ..storage.files import atomic_write

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    count = len(results["knn"]["per_class"])
    names = classes if classes and len(classes) == count else [str(i) for i in range(count)]
    figure, axis = plt.subplots(figsize=(max(5.0, 0.35 * count + 2), 3.4))
    width = 0.4
    for offset, (name, report) in zip((-width / 2, width / 2), results.items()):
        values = [v if v is not None else 0.0 for v in report["per_class"]]
        axis.bar([i + offset for i in range(count)], values, width, label=f"{name} (top-1 {report['top1']:.3f})")
    axis.axhline(results["knn"]["chance"], ls="--", color="tab:red", lw=1.2, label="chance")
    axis.set(ylim=(0, 1.3), ylabel="accuracy", xlabel="class", title="per-class accuracy on the evaluation split")
    axis.set_xticks(range(count))
    axis.set_xticklabels(names, rotation=90 if count > 12 else 0, fontsize="small")
    axis.legend(fontsize="small", loc="upper left", ncol=3)  # above the bars: accuracies end at 1
    figure.tight_layout()
    try:
        return atomic_write(path, lambda handle: figure.savefig(handle, dpi=110, format="png"))
    finally:
        plt.close(figure)


HELP.setdefault("jepa-eval", (
    "Measures a checkpoint's frozen features: weighted-kNN top-1 and a linear probe (logistic regression on the "
    "features, on the device), each against chance with a 95 % interval, per-class accuracy in per_class.png and "
    "the feature-extraction images/s. Features are cached per checkpoint.",
    {"data=NAME": "the dataset whose labelled train and evaluation splits are used",
     "ckpt_path=FILE": "the Lightning checkpoint (jepa-fit prints it)",
     "eval.protocol=knn|linear": "deterministic views for both splits, or the linear protocol's augmented train split",
     "eval.shots=N": "exactly N labelled train images per class (seeded by eval.seed)",
     "eval.subset=1percent|10percent": "SimCLR's ImageNet label subsets (data=imagenet, imagenet100)",
     "eval.knn.k=N eval.knn.temperature=T": "kNN neighbours and vote temperature [20, 0.07]",
     "+eval.features=DOTTED.PATH": "a callable (model, images) -> (batch, dim) features [the tiny JEPA's]",
     "eval.model_class=DOTTED.PATH": "the LightningModule class of the checkpoint [jepa_datamodules.TinyJEPA]"}))

main: Callable[[], Any] = _entry("jepa-eval", eval_task)
