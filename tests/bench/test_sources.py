"""``bench/sources.py``'s ``run_sources`` (``jepa-bench bench=sources``): the same JPEGs as a
folder, parquet shards, LitData chunks local and on a loopback S3 behind the latency proxy, and
LitData's own loader, in one run (tiny settings: speed is measured by the bench, never asserted
here); bad settings say what is allowed."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module

from jepa_datamodules.bench.sources import LABELS, REMOTE_ROWS, ROWS, run_sources
from tests.helpers.bench import bench_cli

# 48 images, batches of 8 from 1 worker at 32 px: the first batch, 1 warm-up and 2 timed ones per row.
TINY_SOURCES = ["bench.images=48", "bench.batch_size=8", "bench.num_workers=1", "bench.image_size=32",
                "data.patch_size=4", "mask.min_keep=4", "bench.batches=2", "bench.warmup=1", "bench.chunk_bytes=1MB"]


def _digests(blobs) -> list[str]:
    return sorted(hashlib.sha256(blob).hexdigest() for blob in blobs)


@pytest.mark.slow
def test_sources_bench_measures_every_form_of_the_same_images(tmp_path):
    pytest.importorskip("moto.server", reason="moto[server] provides the loopback S3 endpoint")
    pytest.importorskip("litdata")
    pq = pytest.importorskip("pyarrow.parquet")
    result, report = bench_cli(tmp_path, "bench=sources", "data=imagenet", tiny=TINY_SOURCES)
    assert report["mode"] == "sources" and list(report["rows"]) == list(ROWS)
    assert report["data"]["train_images"] == 48 and report["settings"]["batch_size"] == 8
    for label in ("images/s", "CPU ms/image", "GETs/image", "peak PSS", "cache on disk", *LABELS.values()):
        assert label in result.stdout, f"{label!r} missing from the printed table"

    # The parquet shards hold exactly the folder's training JPEGs, byte for byte (in another order).
    folder = Path(report["data"]["folder"])
    parquet = folder.parent.parent / f"{folder.parent.name}-parquet" / "imagenet" / "data"
    rows = [row["bytes"] for shard in sorted(parquet.glob("train-*.parquet"))
            for row in pq.read_table(shard, columns=["image"]).column("image").to_pylist()]
    assert _digests(rows) == _digests(p.read_bytes() for p in (folder / "train").glob("n*/*.JPEG"))

    failed = {name: row["error"] for name, row in report["rows"].items() if "error" in row}
    assert not failed, failed
    for name, row in report["rows"].items():
        assert row["images"] == 2 * 8 and row["probes"]["timed_end"]["images"] == 4 * 8  # first + warm-up + timed
        assert row["images_per_s"] > 0 and row["first_batch_s"] > 0 and row["cpu_ms_per_image"] >= 0
        assert row["peak_pss"]["processes"] == 2  # main + 1 worker: the S3 server's process is left out
        if name in REMOTE_ROWS:  # every read went through the proxy, and LitData cached what it fetched
            assert row["gets_to_first_batch"] > 0 and row["gets_total"] >= row["gets_to_first_batch"]
            assert row["gets_per_image"] >= 0 and row["remote_mb"] > 0 and row["cache_bytes_peak"] > 0
            assert row["gets_per_image_whole_run"] == pytest.approx(row["gets_total"] / (4 * 8))
        else:
            assert row["gets_per_image"] is None and row["requests_while_local"] == 0
    # What each row ran with: shuffle="auto" is the full permutation on files, block order where there are blocks.
    assert {name: row["order"].get("chosen") for name, row in report["rows"].items()} == {
        "folder": "full", "parquet": "blocks", "litdata_local": "blocks", "litdata_s3": "blocks", "litdata_own": None}
    parquet_target = next(t for t in report["targets"] if t["target"].startswith("parquet in place"))
    ratio = report["rows"]["parquet"]["images_per_s"] / report["rows"]["folder"]["images_per_s"]
    assert parquet_target["measured"] == pytest.approx(ratio) == report["ratios"]["parquet_over_folder"]
    assert f"{ratio:.4f} -> {'met' if ratio >= 0.8 else 'MISSED'}" in result.stdout
    assert report["settings"]["order_arguments"] == {"shuffle": "auto"}  # ImageNetDataModule takes it via **kwargs
    assert report["ratios"]["litdata_s3_over_litdata_own"] > 0
    assert {t["target"].split(" ")[0] for t in report["targets"]} == {"parquet", "S3"}


def _cfg(tmp_path: Path, *overrides: str):
    with initialize_config_module(config_module="jepa_datamodules.conf", version_base="1.3"):
        return compose("config", overrides=[f"paths.data_dir={tmp_path}", "bench=sources", *overrides])


@pytest.mark.parametrize("overrides, message", [
    (["data=cifar10"], r"bench=sources reads ImageNet-style JPEGs .* use jepa-bench bench=sources data=imagenet"),
    (["data=imagenet", "bench.rows=[folder,tape]"], r"Unknown value 'tape' for bench.rows. Valid values are"),
    (["data=imagenet", "bench.rows=[]"], r"bench.rows=\[\] is invalid; allowed is a list of rows from folder"),
    (["data=imagenet", "bench.latency_ms=-1"], r"bench.latency_ms=-1 is invalid; allowed is a number of milliseconds"),
    (["data=imagenet", "bench.images=0"], r"bench.images=0 is invalid; allowed is an integer >= 1"),
])
def test_bad_sources_settings_say_what_is_allowed(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        run_sources(_cfg(tmp_path, *overrides), output_dir=tmp_path)
    assert not (tmp_path / "bench.json").exists() and not (tmp_path / "bench-standins").exists()
