"""LitData: any of our datasets as optimized chunks, and a source that reads them back.

One module per concern, as LitData itself splits writing from reading:

- ``convert.py``: :func:`convert_to_litdata` writes a DataModule's splits as chunks (and
  ``resized_jpeg`` / ``resized_storage_report`` for pre-resized images);
- ``source.py``: :class:`LitDataSource` reads one converted split as a ``Source``;
- ``cache.py``: :class:`ChunkCache`, whole remote chunks on local disk, bounded in bytes;
- ``inputs.py``: the DataModule's ``format`` / ``input`` arguments (:data:`INPUTS`, :func:`open_input`);
- ``remote.py``: where a conversion's parts live (:func:`split_url`) and how LitData reaches
  an object store (:func:`check_reachable`, :func:`allow_plain_http`).

Every name is importable from ``jepa_datamodules.streaming`` as before the split.
"""

from .cache import DEFAULT_CACHE_BYTES, ChunkCache, default_cache_root, parse_bytes
from .convert import (DEFAULT_CHUNK_BYTES, DEFAULT_QUALITY, convert_to_litdata, dataset_facts, resized_jpeg,
                      resized_storage_report)
from .inputs import FORMATS, INPUTS, LitDataInput, open_input
from .remote import allow_plain_http, check_reachable, split_url
from .source import DEFAULT_IO_THREADS, LitDataSource, read_facts, read_single_item

__all__ = ["DEFAULT_CACHE_BYTES", "DEFAULT_CHUNK_BYTES", "DEFAULT_IO_THREADS", "DEFAULT_QUALITY", "FORMATS", "INPUTS",
           "ChunkCache", "LitDataInput", "LitDataSource", "allow_plain_http", "check_reachable", "convert_to_litdata",
           "dataset_facts", "default_cache_root", "open_input", "parse_bytes", "read_facts", "read_single_item",
           "resized_jpeg", "resized_storage_report", "split_url"]
