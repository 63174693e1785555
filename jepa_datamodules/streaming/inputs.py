"""The DataModule's inputs besides its own files: ``format`` name -> the class that opens its splits."""

from __future__ import annotations

import importlib
from typing import Any, Sequence

from ..choices import check_choice
from ..errors import ConfigError, action, setting
from .cache import DEFAULT_CACHE_BYTES, parse_bytes
from .remote import split_url
from .source import LitDataSource, read_facts

#: Where a DataModule's items come from besides its own files (``format="files"``, read by
#: the format modules, ``formats/``): ``format`` name -> ``"module:class"`` of the input,
#: imported on first use. The class takes ``(input, storage_options, cache_dir, cache_bytes)``
#: and has ``open_split(split) -> Source``, ``refuse_subsets(options, names)`` and ``facts``
#: (see :class:`LitDataInput`): a new backend (WebDataset shards, say) is one module and one line here.
INPUTS = {
    "litdata": "jepa_datamodules.streaming.inputs:LitDataInput",
}
#: The DataModule's ``format`` argument: its own files, or one of :data:`INPUTS`.
FORMATS = ("files", *INPUTS)


class LitDataInput:
    """``format="litdata"``: a DataModule's splits read from the chunks that
    :func:`~jepa_datamodules.streaming.convert_to_litdata` wrote to ``input``. There is nothing to
    prepare (the chunks are read where they are) and no option that selects part of a split
    (the chunks hold whole splits)."""

    def __init__(self, input: str, storage_options: dict | None = None, cache_dir: str | None = None,
                 cache_bytes: int | str = DEFAULT_CACHE_BYTES):
        self.input = input
        self.storage_options = storage_options
        self.cache_dir = cache_dir
        self.cache_bytes = parse_bytes(cache_bytes)
        self._facts: dict[str, Any] | None | bool = False  # False: not read yet

    @property
    def facts(self) -> dict[str, Any] | None:
        """The dataset's facts as the conversion recorded them (:func:`read_facts`), read once."""
        if self._facts is False:
            self._facts = read_facts(self.input, self.storage_options, self.cache_dir)
        return self._facts  # type: ignore[return-value]

    def refuse_subsets(self, options: dict[str, Any], names: Sequence[str]) -> None:
        """Raise for a set option among ``names`` (STL-10's ``fold``): the chunks hold whole splits."""
        for name in names:
            if options.get(name) is not None:
                raise ConfigError(f"{setting(name, options[name])} is not available with {setting('format', 'litdata')} "
                                  f"(the chunks hold whole splits); allowed is {setting(name, None)}, or "
                                  f"{setting('format', 'files')}.", setting=name, allowed=None)

    def open_split(self, split: str) -> LitDataSource:
        return LitDataSource(split_url(self.input, split), storage_options=self.storage_options, cache_dir=self.cache_dir,
                             cache_bytes=self.cache_bytes)


def open_input(format: str, input: str | None, storage_options: dict | None = None,
               cache_dir: str | None = None, cache_bytes: int | str = DEFAULT_CACHE_BYTES) -> LitDataInput | None:
    """The DataModule's input for ``format`` (one of :data:`INPUTS`); None for its own files.
    The arguments are checked here, each bad combination refused with one sentence."""
    check_choice("format", format, FORMATS)
    if format != "files" and not input:
        raise ConfigError(f"{setting('input', input)} is invalid with {setting('format', format)}; allowed is the "
                          f"folder or URL (s3://bucket/prefix) given as output to {action('convert', '<name>')}.",
                          setting="input", allowed="a folder or URL")
    if format == "files" and input is not None:
        raise ConfigError(f"{setting('input', input)} is only read with {setting('format', 'litdata')}; set "
                          f"{setting('format', 'litdata')} or leave {setting('input')} unset to read the dataset's own "
                          "files.", setting="input", allowed=None)
    parse_bytes(cache_bytes)
    if format == "files":
        return None
    module, name = INPUTS[format].split(":")
    return getattr(importlib.import_module(module), name)(input, storage_options, cache_dir, cache_bytes)
