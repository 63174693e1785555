"""``streaming/cache.py``'s ``ChunkCache``: the remote chunks a loader keeps on disk stay within
``stream_cache_bytes`` while every chunk is still read once, and a budget smaller than the
shuffle window needs is a warning naming it."""

from __future__ import annotations

import pytest

from jepa_datamodules.streaming import ChunkCache, convert_to_litdata
from tests.helpers.litdata import SYNTHETIC, synthetic
from tests.helpers.streams import s3_server


@pytest.fixture(scope="module")
def s3_endpoint():
    with s3_server() as endpoint:
        yield endpoint


@pytest.mark.slow
def test_remote_chunks_on_disk_stay_within_stream_cache_bytes(converted, s3_endpoint, tmp_path, monkeypatch):
    data_dir, chunks = converted
    options = {"endpoint_url": s3_endpoint}
    convert_to_litdata(synthetic(data_dir), "s3://jepa/bounded", storage_options=options, chunk_bytes="40KB",
                       num_workers=1)
    chunk = max(p.stat().st_size for p in (chunks / "train").glob("*.bin"))
    monkeypatch.setattr(ChunkCache, "GRACE_SECONDS", 0.0)  # one process: nobody else is reading
    peaks = []
    evict = ChunkCache.evict
    monkeypatch.setattr(ChunkCache, "evict", lambda self, keep=frozenset(): (evict(self, keep),
                                                                             peaks.append(self.cached_bytes())))
    dm = synthetic(data_dir, 0, format="litdata", input="s3://jepa/bounded", storage_options=options,
                   stream_cache_dir=str(tmp_path / "cache"), stream_cache_bytes=6 * chunk, shuffle_window=2)
    seen = [i for batch in dm.train_dataloader() for i in batch["indices"].tolist()]
    assert len(seen) == len(set(seen)) == SYNTHETIC["num_train"]
    source = dm.datasets["train"].source
    assert len(source.sizes) == 8 and peaks and max(peaks) <= 6 * chunk and source.cached_bytes() <= 6 * chunk
    # The window (2 chunks, +1 at its edge) and the chunks fetched ahead always fitted: each read once.
    assert source.gets() == 1 + len(source.sizes)
    too_small = synthetic(data_dir, 0, format="litdata", input="s3://jepa/bounded", storage_options=options,
                          stream_cache_dir=str(tmp_path / "cache"), stream_cache_bytes=2 * chunk, shuffle_window=2)
    with pytest.warns(UserWarning, match=r"stream_cache_bytes=.* holds fewer than 4 chunks of s3://jepa/bounded/train"):
        too_small.setup()
