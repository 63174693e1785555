"""``formats/hfparquet.py``: the parquet release's promises a user relies on without seeing them: a split is complete
only with every shard its names count, 00000 included, and as many as the release has; and
a loader worker re-reads a row group only when its least recently used cache slot was given up."""

from __future__ import annotations

import pyarrow.parquet as pq

from jepa_datamodules import ImageNetDataModule

SMALL = dict(image_size=32, patch_size=4, batch_size=4, num_workers=0, progress=False)


def _failures(data_dir) -> dict[str, str]:
    return {c.name: c.found for c in ImageNetDataModule(data_dir=data_dir, **SMALL).verify().failures}


def test_a_split_without_its_first_shard_fails_verification(release):
    data_dir, _ = release
    (data_dir / "imagenet" / "data" / "validation-00000-of-00002.parquet").unlink()
    assert _failures(data_dir).get("shards validation") == "1 of 2: missing 00000"


def test_a_complete_set_of_fewer_shards_than_the_release_fails_verification(release):
    data_dir, _ = release
    shards = data_dir / "imagenet" / "data"
    (shards / "validation-00001-of-00002.parquet").unlink()
    (shards / "validation-00000-of-00002.parquet").rename(shards / "validation-00000-of-00001.parquet")
    assert _failures(data_dir).get("shards validation") == "1 shards (the release has 2)"


def test_the_row_group_cache_gives_up_the_least_recently_used_group(release, monkeypatch):
    data_dir, _ = release
    source = ImageNetDataModule(data_dir=data_dir, **SMALL).open_split("train")
    assert source.row_group_cache == 2 and len(source.group_start) > 4
    reads = []
    real = pq.ParquetFile.read_row_group

    def counted(self, i, *args, **kwargs):
        reads.append(i)
        return real(self, i, *args, **kwargs)

    monkeypatch.setattr(pq.ParquetFile, "read_row_group", counted)
    a, b, c = (int(source.group_start[g]) for g in range(3))  # the first row of row groups 0, 1, 2
    expected = {row: ImageNetDataModule(data_dir=data_dir, **SMALL).open_split("train").read_bytes(row)
                for row in (a, b, c)}
    reads.clear()
    # a, b; a again (a hit, and now the most recent); c gives up b; a and c are both held.
    got = [source.read_bytes(row) for row in (a, b, a, c, a, c)]
    assert got == [expected[row] for row in (a, b, a, c, a, c)]
    assert len(reads) == 3, reads
