"""``jepa-bench bench=sources data=imagenet``: one set of JPEGs in every storage form, side by side.

One run writes (or reuses) ``bench.images`` ImageNet-like JPEGs (the ImageNet stand-in of
``standins.py``: ~105 KB, 500x375-class sizes) and reads the same images in five forms, one
after the other, with the same batch size, image size, workers and per-image work (decode
+ random-resized crop + flip of ``pipeline.transforms.TrainView``, views built in the
loader workers, the data config's masks):

1. ``folder``: the ImageNet ``train/<wnid>/`` JPEG folder (``source=folders``);
2. ``parquet``: the Hugging Face release's shards read in place (``source=parquet``):
   the same JPEGs in a seeded shuffled row order (the release's rows are not class-sorted),
   100-row row groups, snappy (``standin_writers.write_hf_parquet``);
3. ``litdata_local``: LitData chunks of the folder (``streaming.convert_to_litdata``,
   ``bench.chunk_bytes`` per chunk) read from the local disk (``format=litdata``);
4. ``litdata_s3``: the same chunk files uploaded to a loopback S3 endpoint (moto) and read
   through a proxy that adds ``bench.latency_ms`` to every request and counts them
   (``latency_proxy.py``), with ``stream_cache_dir`` in a fresh temporary folder;
5. ``litdata_own``: LitData's own ``StreamingDataset(shuffle=True)`` + ``StreamingDataLoader``
   on the same remote chunks through the same proxy (its own cache folder), each item
   decoded and cropped by the same ``TrainView``, batches collated with the same mask
   generator.

Per row (``measure.measure_loader``): images/s over ``bench.batches`` batches after
``bench.warmup``, CPU ms/image of the loader processes (main + workers, from ``/proc``; the
S3 server's process is left out), time to the first batch, peak PSS of the loader
processes, GETs per image after the first batch (the proxy's count; index files included),
and the peak bytes on disk of the row's LitData cache folder. Ratios: every row against
the JPEG folder, and the S3 row against LitData's own loader, with the issue's targets
(parquet >= 0.8x the folder; S3 >= 0.8x LitData's own with at most 2x its GETs per image).

A row that fails is reported with its error in the table and the others still run. Every
row's DataModule is built with the stand-in's counts as its ``$JEPA_CATALOG`` override
(``standins.bench_datamodule``). The DataModule's
epoch-order arguments (``shuffle``, ``shuffle_window``) are passed only where its
constructor has them, and each row records what it ran with.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from ..choices import choice_message
from ..errors import ConfigError
from ..notices import Notice
from ..storage.files import staging_folder
from .latency_proxy import LatencyProxy
from .measure import measure_loader
from .report import machine, mask_name, standin_line, write_report
from .run import setting_count
from .standin_writers import write_hf_parquet
from .standins import bench_datamodule, build_bench_datamodule, standin_counts

#: The rows, in the order they run.
ROWS = ("folder", "parquet", "litdata_local", "litdata_s3", "litdata_own")
LABELS = {"folder": "JPEG folder", "parquet": "parquet in place", "litdata_local": "LitData, local",
          "litdata_s3": "LitData, S3 + latency", "litdata_own": "LitData's own, S3"}
REMOTE_ROWS = ("litdata_s3", "litdata_own")
_BUCKET = "jepa-bench"
_PREFIX = "imagenet"
# The targets (issue 21, "Measured, not assumed").
TARGET_PARQUET = 0.8      # parquet in place / JPEG folder, images/s
TARGET_S3 = 0.8           # S3 / LitData's own loader, images/s
TARGET_GETS = 2.0         # S3 GETs per image / LitData's own


# ============================================================== the entry point
def run_sources(cfg: DictConfig, output_dir: str | Path | None = None) -> dict[str, Any]:
    """Measure the rows of ``cfg.bench.rows`` (see the module docstring); returns what ``bench.json`` holds.

    ``cfg.bench`` (``conf/bench/sources.yaml``): ``images`` [1600] training images,
    ``batch_size`` [64], ``num_workers`` [2], ``image_size`` [224] (these three replace
    the data config's), ``batches`` [20] and ``warmup`` [2], ``latency_ms`` [20] added
    per request, ``chunk_bytes`` ["16MB"] per LitData chunk, ``rows`` [all five],
    ``shuffle`` ["auto"] and ``shuffle_window`` [null: the DataModule's default], passed
    where the DataModule has them.
    """
    settings = check_settings(cfg.bench)
    if OmegaConf.select(cfg, "data._target_") != "jepa_datamodules.ImageNetDataModule":
        raise ConfigError(f"bench=sources reads ImageNet-style JPEGs in each storage form; data={cfg.data._target_} is "
                         "not ImageNet: use jepa-bench bench=sources data=imagenet.")
    load_before = os.getloadavg()
    cfg = _loader_config(cfg, settings)
    order = _order_arguments(cfg, settings)
    batch = settings["batch_size"]
    needed = (1 + settings["warmup"] + settings["batches"]) * batch
    if settings["images"] < needed:
        warnings.warn(Notice(f"{settings['images']} images are fewer than the {needed} each row reads; rows wrap "
                             "around into a new epoch (each boundary drains the loader once, and a cache may be read "
                             "again)."), stacklevel=2)

    # -- 1. the images, once: the JPEG folder stand-in, then the other forms made from its files
    run_settings = {"synthetic_like": "imagenet", "standin_images": settings["images"], "warmup": settings["warmup"],
                    "batches": settings["batches"]}
    folder_dm, data = build_bench_datamodule(cfg, run_settings)
    folder_dm.prepare_data()
    counts = standin_counts(folder_dm.spec, settings["images"])
    report: dict[str, Any] = {
        "mode": "sources", "dataset": "imagenet",
        "data": {**data, "train_images": counts["train"], "chunk_bytes": settings["chunk_bytes"]},
        "settings": {"batch_size": batch, "num_workers": settings["num_workers"],
                     "image_size": settings["image_size"], "batches": settings["batches"],
                     "warmup": settings["warmup"], "latency_ms": settings["latency_ms"], "rows": settings["rows"],
                     "masks": mask_name(folder_dm.mask_generator), "views_on": "workers",
                     "order_arguments": order or "none (the DataModule has no shuffle / shuffle_window arguments)"},
        "machine": machine(),
        "rows": {},
    }
    wanted = settings["rows"]
    with tempfile.TemporaryDirectory(prefix="jepa-bench-sources-") as scratch, \
            _environment(_run_environment(Path(scratch))):
        scratch = Path(scratch)
        chunks = _litdata_chunks(folder_dm, settings) if any(r.startswith("litdata") for r in wanted) else None
        proxy_context = (LatencyProxy(settings["latency_ms"]) if any(r in REMOTE_ROWS for r in wanted)
                         else contextlib.nullcontext())
        with proxy_context as proxy:
            if proxy is not None:
                _upload(chunks, proxy.s3_url)
                report["data"]["remote"] = f"s3://{_BUCKET}/{_PREFIX}"
            for row in wanted:
                report["rows"][row] = _measure_row(row, cfg, settings, order, folder_dm, data, chunks, proxy,
                                                   scratch / f"cache-{row}")

    report["ratios"], report["targets"] = _ratios(report["rows"])
    report["machine"]["load_average"] = {"before": list(load_before), "after": list(os.getloadavg())}
    return write_report(report, output_dir, format_report)


def check_settings(bench_cfg: DictConfig) -> dict[str, Any]:
    """``cfg.bench`` checked: each bad value refused with one sentence naming what is allowed."""
    def count(name: str, low: int) -> int:
        return setting_count(bench_cfg, name, low)

    latency = bench_cfg.get("latency_ms")
    if isinstance(latency, bool) or not isinstance(latency, (int, float)) or latency < 0:
        raise ConfigError(f"bench.latency_ms={latency} is invalid; allowed is a number of milliseconds >= 0.")
    rows = list(bench_cfg.get("rows") or [])
    for row in rows:
        if row not in ROWS:
            raise ConfigError(choice_message(row, ROWS, "bench.rows"))
    if not rows:
        raise ConfigError(f"bench.rows={rows} is invalid; allowed is a list of rows from {', '.join(ROWS)}.")
    window = bench_cfg.get("shuffle_window")
    if window is not None:
        window = count("shuffle_window", 1)
    return {"images": count("images", 1), "batch_size": count("batch_size", 1), "num_workers": count("num_workers", 0),
            "image_size": count("image_size", 8), "batches": count("batches", 1), "warmup": count("warmup", 0),
            "latency_ms": float(latency), "chunk_bytes": str(bench_cfg.get("chunk_bytes")),
            "rows": [row for row in ROWS if row in rows], "shuffle": bench_cfg.get("shuffle"),
            "shuffle_window": window}


def _loader_config(cfg: DictConfig, settings: dict[str, Any]) -> DictConfig:
    """``cfg`` with the bench's batch size, workers and image size in ``data``, views in the workers."""
    cfg = cfg.copy()
    OmegaConf.set_struct(cfg, False)
    cfg.data.batch_size = settings["batch_size"]
    cfg.data.num_workers = settings["num_workers"]
    cfg.data.image_size = settings["image_size"]
    cfg.data.views_on = "workers"  # LitData's own loader builds its views in its workers too
    cfg.data.source = "folders"
    cfg.data.progress = False
    return cfg


def _order_arguments(cfg: DictConfig, settings: dict[str, Any]) -> dict[str, Any]:
    """``shuffle`` / ``shuffle_window`` for the DataModule, only those its constructor has."""
    import hydra

    cls = hydra.utils.get_class(cfg.data._target_)
    return {name: settings[name] for name in ("shuffle", "shuffle_window")
            if settings[name] is not None and _accepts(cls, name)}


def _accepts(cls: type, name: str) -> bool:
    """Whether ``cls(name=...)`` is an argument of its constructor, following ``**kwargs`` up the bases."""
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        parameters = inspect.signature(init).parameters
        if name in parameters:
            return True
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
            return False
    return False


# ================================================================ the forms
def _parquet_datamodule(cfg: DictConfig, folder_dm, data: dict[str, Any], order: dict[str, Any]):
    """The Hugging Face shards of the folder's own JPEGs (written once, then reused), as a DataModule.

    The stand-in's counts (``standins.standin_counts``) hold the release's layout: a test split
    (one image per class, labels -1 as upstream; its rows here are the first validation
    images) and shards of at most 1,000 rows.
    """
    from ..formats.base import load_encoded

    counts = standin_counts(folder_dm.spec, data["catalog_override"]["splits"]["train"])
    root = folder_dm.folder.parent.parent / f"{folder_dm.folder.parent.name}-parquet"
    dm = bench_datamodule(cfg, data, data_dir=root, source="parquet", **order)
    if not dm.folder.is_dir():
        train, val = folder_dm.open_split("train"), folder_dm.open_split("val")
        shuffled = np.random.default_rng(int(cfg.seed)).permutation(len(train))
        # test: the release's labels are -1; its rows here are the first validation images
        rows = ([(train, int(i)) for i in shuffled] + [(val, i) for i in range(len(val))]
                + [(val, i) for i in range(counts["test"])])
        labels = {"train": np.asarray(train.labels)[shuffled], "val": np.asarray(val.labels), "test": np.full(counts["test"], -1)}
        pending = iter(rows)
        staging = staging_folder(dm.folder)
        try:
            write_hf_parquet(dm.spec, staging, labels, counts["shards"], lambda: load_encoded(*next(pending)))
            os.replace(staging, dm.folder)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return dm


def _litdata_chunks(folder_dm, settings: dict[str, Any]) -> Path:
    """The folder converted to LitData chunks beside it (once; a complete conversion appears by rename)."""
    from ..streaming import convert_to_litdata

    size = settings["chunk_bytes"]
    target = folder_dm.folder.parent / f"{folder_dm.folder.name}-litdata-{size}"
    if not target.is_dir():
        staging = staging_folder(target)
        try:
            convert_to_litdata(folder_dm, staging, chunk_bytes=size, progress=False)
            os.replace(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return target


def _upload(chunks: Path, s3_url: str) -> None:
    """The chunk files, byte for byte, to ``s3://jepa-bench/imagenet/`` (straight to moto: not counted)."""
    import boto3

    client = boto3.client("s3", endpoint_url=s3_url)
    client.create_bucket(Bucket=_BUCKET)
    for path in sorted(p for p in chunks.rglob("*") if p.is_file()):
        client.upload_file(str(path), _BUCKET, f"{_PREFIX}/{path.relative_to(chunks).as_posix()}")


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """``values`` set in the environment for the run (loader workers inherit them), then restored."""
    before = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _run_environment(scratch: Path) -> dict[str, str]:
    """moto's dummy credentials, and LitData's optimizer staging under the run's temporary folder
    (by default it stages under $HOME)."""
    return {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
            **{name: str(scratch / name.lower()) for name in ("DATA_OPTIMIZER_CACHE_FOLDER",
                                                              "DATA_OPTIMIZER_DATA_CACHE_FOLDER")}}


# =========================================================== LitData's own loader
class LitDataView:
    """LitData's item transform: the stored JPEG decoded and cropped by ``view`` (our ``TrainView``),
    seeded per item as our loader seeds it."""

    def __init__(self, view: Callable[[Any, torch.Generator], torch.Tensor], seed: int):
        self.view = view
        self.seed = seed

    def __call__(self, item: dict[str, Any]) -> dict[str, Any]:
        from PIL import Image

        from ..pipeline.sampling import seeded_generator

        image = Image.open(io.BytesIO(bytes(item["image"])))
        return {"image": self.view(image, seeded_generator(self.seed, int(item["index"]))),
                "label": int(item["label"]), "index": int(item["index"])}


class LitDataCollate:
    """Stacks LitData's items into our batch layout and adds the same masks our collator adds."""

    def __init__(self, mask_generator: Callable | None, seed: int):
        self.mask_generator = mask_generator
        self.seed = seed
        self.batches = 0

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        from ..pipeline.sampling import seeded_generator

        batch = {"images": torch.stack([item["image"] for item in items]),
                 "labels": torch.tensor([item["label"] for item in items]),
                 "indices": torch.tensor([item["index"] for item in items])}
        if self.mask_generator is not None:
            self.batches += 1
            masks = self.mask_generator(len(items), seeded_generator(self.seed, self.batches))
            if masks is not None:
                batch["context_masks"], batch["target_masks"] = masks
        return batch


def litdata_own_loader(url: str, storage_options: dict, cache_dir: Path, dm, batch_size: int, workers: int):
    """LitData's ``StreamingDataset(shuffle=True)`` + ``StreamingDataLoader`` with our view and masks."""
    from litdata import StreamingDataLoader, StreamingDataset

    from ..streaming import allow_plain_http

    allow_plain_http(storage_options)
    seed = int(dm.hparams.seed)
    dataset = StreamingDataset(url, cache_dir=str(cache_dir), storage_options=storage_options, shuffle=True, seed=seed,
                               transform=LitDataView(dm.train_view, seed))
    return StreamingDataLoader(dataset, batch_size=batch_size, num_workers=workers, drop_last=True,
                               collate_fn=LitDataCollate(dm.mask_generator, seed),
                               pin_memory=torch.cuda.is_available())


# ================================================================ one row
class _FolderSize:
    """Bytes on disk under ``folder`` (``now()``), and the most seen (``peak``)."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.peak = 0

    def now(self) -> int:
        total = 0
        for path in self.folder.rglob("*") if self.folder.is_dir() else ():
            with contextlib.suppress(OSError):
                if path.is_file():
                    total += path.stat().st_blocks * 512
        self.peak = max(self.peak, total)
        return total


def _measure_row(row: str, cfg: DictConfig, settings: dict[str, Any], order: dict[str, Any], folder_dm,
                 data: dict[str, Any], chunks: Path | None, proxy: Any, cache_dir: Path) -> dict[str, Any]:
    cache_dir.mkdir(parents=True, exist_ok=True)
    remote = row in REMOTE_ROWS
    storage_options = {"endpoint_url": proxy.url} if remote else None
    result: dict[str, Any] = {"label": LABELS[row]}
    try:
        if row == "litdata_own":
            dm = folder_dm  # its train view and mask generator: the same per-image work
            url = f"s3://{_BUCKET}/{_PREFIX}/train"
            result["order"] = {"shuffle": "LitData's (shuffle=True: chunks, then items within them)"}

            def make_loader():
                return litdata_own_loader(url, storage_options, cache_dir, dm, settings["batch_size"],
                                          settings["num_workers"])
        else:
            if row == "folder":
                dm = bench_datamodule(cfg, data, **order)
            elif row == "parquet":
                dm = _parquet_datamodule(cfg, folder_dm, data, order)
            else:
                source = f"s3://{_BUCKET}/{_PREFIX}" if remote else str(chunks)
                dm = bench_datamodule(cfg, data, format="litdata", input=source, storage_options=storage_options,
                                      stream_cache_dir=str(cache_dir), **order)
            dm.prepare_data()
            dm.setup("fit")
            result["order"] = {key: dm.hparams.get(key, "n/a (not an argument)") for key in ("shuffle", "shuffle_window")}
            result["order"]["chosen"] = getattr(dm, "train_order", "full")  # what setup() picked for this source
            make_loader = dm.train_dataloader
        before = proxy.stats() if proxy is not None else None
        cache = _FolderSize(cache_dir)

        def probe() -> dict[str, Any]:
            stats = proxy.stats() if proxy is not None else {}
            return {"gets": stats.get("gets"), "requests": stats.get("requests"), "bytes": stats.get("bytes"),
                    "cache_bytes": cache.now()}

        measured = measure_loader(LABELS[row], make_loader, settings, probe=probe, watch=cache.now,
                                  exclude=frozenset([proxy.pid]) if proxy is not None else frozenset())
        measured.pop("loader_settings")
        result.update(measured)
        result["cache_bytes_peak"] = cache.peak
        result.update(_request_figures(measured["probes"], before) if remote else
                      {"gets_per_image": None, "gets_total": None})
        if proxy is not None and not remote:  # a local row must not touch the endpoint
            result["requests_while_local"] = measured["probes"]["timed_end"]["requests"] - before["requests"]
    except Exception as error:  # noqa: BLE001 - a failed row is reported; the others still run
        # A loader worker's error arrives with its traceback as the message: its last line says what failed.
        lines = [line.strip() for line in str(error).splitlines() if line.strip()] or [""]
        result["error"] = lines[-1] if len(lines) > 1 else f"{type(error).__name__}: {lines[0]}"
        result["error_detail"] = str(error)[-4000:]  # the report's table shows the row as failed
    finally:
        shutil.rmtree(cache_dir, ignore_errors=True)
    return result


def _request_figures(probes: dict[str, Any], before: dict[str, Any]) -> dict[str, Any]:
    first, end = probes["first_batch"], probes["timed_end"]
    after_first = end["images"] - first["images"]
    return {"gets_per_image": (end["gets"] - first["gets"]) / after_first if after_first else None,
            "gets_total": end["gets"] - before["gets"], "gets_to_first_batch": first["gets"] - before["gets"],
            # from building the loader on (index files, chunks fetched ahead of the first batch included)
            "gets_per_image_whole_run": (end["gets"] - before["gets"]) / end["images"],
            "requests_total": end["requests"] - before["requests"], "remote_mb": (end["bytes"] - before["bytes"]) / 1e6,
            "images_received": end["images"]}


# ================================================================ the report
def _ratios(rows: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    def rate(name: str) -> float | None:
        row = rows.get(name)
        return row["images_per_s"] if row and "images_per_s" in row else None

    def over(a: str, b: str) -> float | None:
        ra, rb = rate(a), rate(b)
        return ra / rb if ra and rb else None

    ratios = {f"{row}_over_folder": over(row, "folder") for row in ROWS if row != "folder"}
    ratios["litdata_s3_over_litdata_own"] = over("litdata_s3", "litdata_own")
    gets_s3 = (rows.get("litdata_s3") or {}).get("gets_per_image")
    gets_own = (rows.get("litdata_own") or {}).get("gets_per_image")
    targets = []
    if ratios["parquet_over_folder"] is not None:
        targets.append({"target": f"parquet in place >= {TARGET_PARQUET}x the JPEG folder's images/s",
                        "measured": ratios["parquet_over_folder"], "met": ratios["parquet_over_folder"] >= TARGET_PARQUET})
    if ratios["litdata_s3_over_litdata_own"] is not None:
        value = ratios["litdata_s3_over_litdata_own"]
        targets.append({"target": f"S3 >= {TARGET_S3}x LitData's own loader's images/s", "measured": value,
                        "met": value >= TARGET_S3})
    if gets_s3 is not None and gets_own is not None:
        targets.append({"target": f"S3 GETs/image after the first batch <= {TARGET_GETS:g}x LitData's own "
                                  f"({gets_own:.4f})", "measured": gets_s3, "met": gets_s3 <= TARGET_GETS * gets_own})
        whole_s3 = rows["litdata_s3"]["gets_per_image_whole_run"]
        whole_own = rows["litdata_own"]["gets_per_image_whole_run"]
        targets.append({"target": f"S3 GETs/image over the whole run <= {TARGET_GETS:g}x LitData's own "
                                  f"({whole_own:.4f})", "measured": whole_s3, "met": whole_s3 <= TARGET_GETS * whole_own})
    return ratios, targets


def format_report(report: dict[str, Any]) -> str:
    """The printed table: one line per row, then the ratios and the targets."""
    s, m = report["settings"], report["machine"]
    load = m["load_average"]
    lines = [f"== jepa-bench sources: {report['data']['train_images']:,} ImageNet-like JPEGs in each form ==",
             f"machine:  {m['cpu_count']} CPU cores, {m['cuda_device'] or 'no CUDA device'}; torch {m['torch']}, "
             f"load average {load['before'][0]:.1f} -> {load['after'][0]:.1f}",
             f"setting:  batch {s['batch_size']}, {s['num_workers']} workers, image {s['image_size']}, views in workers, "
             f"masks {s['masks']}, {s['batches']} timed batches after {s['warmup']}; {s['latency_ms']:g} ms per request "
             f"on S3, chunks of {report['data']['chunk_bytes']}; order arguments: {s['order_arguments']}",
             standin_line(report["data"], width=10),
             f"{'':24}{'images/s':>10}{'CPU ms/image':>14}{'first batch':>13}{'GETs/image':>12}{'peak PSS':>20}"
             f"{'cache on disk':>15}  order"]
    for row, result in report["rows"].items():
        if "error" in result:
            lines.append(f"{result['label']:24}failed: {result['error'][:200]}")
            continue
        pss = result["peak_pss"]
        memory = f"{pss['total_mb']:,.0f} MB ({pss['processes']} procs)" if pss else "n/a"
        gets = "" if result["gets_per_image"] is None else f"{result['gets_per_image']:.3f}"
        order = ", ".join(f"{k}={v}" for k, v in result["order"].items())
        lines.append(f"{result['label']:24}{result['images_per_s']:>10,.0f}{result['cpu_ms_per_image']:>14.2f}"
                     f"{result['first_batch_s']:>11.2f} s{gets:>12}{memory:>20}"
                     f"{result['cache_bytes_peak'] / 1e6:>12,.1f} MB  {order}")
    ratios = report["ratios"]
    shown = [f"{LABELS[key.split('_over_')[0]]} {value:.2f}x" for key, value in ratios.items()
             if key.endswith("_over_folder") and value is not None]
    if shown:
        lines.append("vs folder: " + "; ".join(shown))
    if ratios.get("litdata_s3_over_litdata_own") is not None:
        lines.append(f"vs LitData's own: S3 {ratios['litdata_s3_over_litdata_own']:.2f}x images/s")
    for target in report["targets"]:
        lines.append(f"target:   {target['target']}: {target['measured']:.4f} -> {'met' if target['met'] else 'MISSED'}")
    lines.append(f"json:     {report['json']}")
    return "\n".join(lines)
