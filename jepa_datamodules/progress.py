"""How long steps (download, extract, hash, generate, unpack, convert, train) report progress.

One rule for every command and every step, decided from the ``progress`` argument that the
DataModules and helpers take:

- ``False``: nothing is shown.
- ``True``: a tqdm bar on stderr, even when stderr is not a terminal.
- ``None`` (the default): a tqdm bar when stderr is a terminal; otherwise (a SLURM or CI log, a
  pipe, a notebook) plain lines, one every ``LINE_EVERY_FRACTION`` [10 %] of the work or every
  ``LINE_EVERY_SECONDS`` [30 s] of silence, whichever comes first, and one when the step ends;
  a step over within ``LINE_MIN_SECONDS`` [2 s; ``$JEPA_PROGRESS_MIN_SECONDS``] says nothing. Lines never hold a carriage
  return, so a log file reads top to bottom.

``mode(progress)`` gives the decision ("bar", "lines" or "off"); ``progress_bar`` and
``track`` build the matching object, which callers use like a tqdm bar (``update``, ``close``,
``with``). This module imports neither torch nor Lightning.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

from .choices import choice_message
from .errors import ConfigError
from .units import human_bytes

__all__ = ["LINE_EVERY_FRACTION", "LINE_EVERY_SECONDS", "LINE_MIN_SECONDS", "LineWatcher", "PlainProgress", "mode",
           "progress_bar", "stderr_is_terminal", "track"]

LINE_EVERY_FRACTION = 0.10
LINE_EVERY_SECONDS = 30.0
# Steps quicker than this say nothing, and 10 % lines come at most this often: hashing a small
# file or unpacking a tiny archive should not add a dozen lines to a log.
# $JEPA_PROGRESS_MIN_SECONDS sets it for a run (0: every step reports, however quick).
MIN_SECONDS_ENV = "JEPA_PROGRESS_MIN_SECONDS"


def _min_seconds(text: str | None) -> float:
    try:
        value = float(text) if text else 2.0
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise ConfigError(f"{MIN_SECONDS_ENV}={text!r} is invalid; allowed is a number of seconds, 0 or more.")
    return value


LINE_MIN_SECONDS = _min_seconds(os.environ.get(MIN_SECONDS_ENV))
_MODES = ("bar", "lines", "off")
_T = TypeVar("_T")


def stderr_is_terminal() -> bool:
    """True when ``sys.stderr`` is an open terminal (False for a replaced or closed stderr)."""
    try:
        return sys.stderr is not None and sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def mode(progress: bool | str | None) -> str:
    """"bar", "lines" or "off" for a ``progress`` setting (see the module docstring).

    A decided mode passes through unchanged, so helpers can hand it on to each other.
    """
    if isinstance(progress, str):
        if progress not in _MODES:
            raise ConfigError(choice_message(progress, ("None", "True", "False"), "argument progress",
                                            note=" (or one of 'bar', 'lines', 'off')"))
        return progress
    if progress is None:
        return "bar" if stderr_is_terminal() else "lines"
    return "bar" if progress else "off"


def _tqdm_size() -> dict[str, Any]:
    """tqdm sizing: follow the terminal's size; 80 columns / 20 rows where it reports 0.

    A terminal that reports 0 columns or 0 rows (a pseudo-terminal nobody sized, some container
    consoles) makes tqdm trim every line to nothing or skip drawing it, so the user would see no
    bar at all. 80 x 20 are tqdm's own fallbacks where it cannot ask the terminal.
    """
    try:
        columns, rows = os.get_terminal_size(sys.stderr.fileno())
    except (AttributeError, OSError, ValueError):  # not a terminal, or stderr replaced / closed
        columns, rows = 0, 0
    if columns > 0 and rows > 0:
        return {"dynamic_ncols": True}
    return {"ncols": columns or 80, "nrows": rows or 20}


def _amount(value: float, byte_units: bool, unit: str) -> str:
    if not byte_units:
        return f"{int(value):,} {unit}"
    return human_bytes(value)


class PlainProgress:
    """Progress as plain lines on stderr, for logs: ``<desc>: 40 % (4,000 / 10,000 img), 12 s``.

    A line is written each time another ``LINE_EVERY_FRACTION`` of ``total`` is done (but not
    within ``LINE_MIN_SECONDS`` [2 s] of the previous line or of the start), or when
    ``LINE_EVERY_SECONDS`` passed since the last line (the only trigger when ``total`` is None),
    and once more by ``close`` (``done``). A step over within ``LINE_MIN_SECONDS`` writes nothing.
    """

    def __init__(self, total: int | None, desc: str, *, unit: str = "it", initial: int = 0,
                 byte_units: bool = False, stream: Any = None):
        self.total = total if total and total > 0 else None
        self.desc, self.unit, self.byte_units = desc, unit, byte_units
        self.n = initial
        self.stream = stream
        self.started = self.last_line = time.monotonic()
        self._next_fraction = self._fraction_after(initial)
        self.closed = False
        self.lines_written = 0
        self.postfix = ""

    def _fraction_after(self, n: int) -> float:
        if self.total is None:
            return float("inf")
        steps = int(n / self.total / LINE_EVERY_FRACTION + 1e-9)
        return (steps + 1) * LINE_EVERY_FRACTION

    def _write(self, text: str) -> None:
        stream = self.stream if self.stream is not None else sys.stderr
        if stream is None:
            return
        print(f"{self.desc}: {text}", file=stream, flush=True)
        self.last_line = time.monotonic()
        self.lines_written += 1

    def _where(self) -> str:
        elapsed = time.monotonic() - self.started
        extra = f", {self.postfix}" if self.postfix else ""
        if self.total is None:
            return f"{_amount(self.n, self.byte_units, self.unit)}, {elapsed:.0f} s{extra}"
        share = 100.0 * self.n / self.total
        done = _amount(self.n, self.byte_units, "").strip()
        return f"{share:.0f} % ({done} of {_amount(self.total, self.byte_units, self.unit)}), {elapsed:.0f} s{extra}"

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        crossed = self.total is not None and self.n / self.total >= self._next_fraction - 1e-9
        if crossed:
            self._next_fraction = self._fraction_after(self.n)
        if (crossed and self.n < self.total and now - self.last_line >= LINE_MIN_SECONDS) \
                or now - self.last_line >= LINE_EVERY_SECONDS:
            self._write(self._where())

    def set_postfix_str(self, text: str) -> None:
        """Text appended to the next lines (as tqdm's ``set_postfix_str``), e.g. ``loss 0.42``."""
        self.postfix = text

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.lines_written or time.monotonic() - self.started >= LINE_MIN_SECONDS:
            self._write(f"done, {self._where()}")

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, kind: Any, error: Any, trace: Any) -> None:
        if kind is None:
            self.close()
        else:  # the step failed: say where it stopped, not "done"
            self.closed = True
            self._write(f"stopped at {self._where()}")


def progress_bar(total: int | None, desc: str, *, unit: str = "it", progress: bool | str | None = None,
                 initial: int = 0, byte_units: bool = False, leave: bool = True) -> Any:
    """A tqdm bar, a :class:`PlainProgress` or a silent tqdm, following ``mode(progress)``.

    ``byte_units`` counts bytes (shown as kB, MB, ...: ``units.human_bytes``'s decimal units); ``leave`` [True] keeps a finished tqdm
    bar on screen. The result has ``update(n)``, ``close()`` and works with ``with``.
    """
    from tqdm import tqdm

    chosen = mode(progress)
    if chosen == "lines":
        return PlainProgress(total, desc, unit=unit, initial=initial, byte_units=byte_units)
    options: dict[str, Any] = {"unit_scale": True, "unit_divisor": 1000} if byte_units else {}
    if chosen == "bar":
        options.update(_tqdm_size(), mininterval=0.5)
    return tqdm(total=total, initial=initial, desc=desc, unit="B" if byte_units else unit, leave=leave,
                disable=chosen == "off", **options)


def track(items: Iterable[_T], desc: str, *, total: int | None = None, unit: str = "it",
          progress: bool | str | None = None) -> Iterator[_T]:
    """Iterate over ``items`` while reporting progress as :func:`progress_bar` does."""
    if total is None:
        try:
            total = len(items)  # type: ignore[arg-type]
        except TypeError:
            total = None
    with progress_bar(total, desc, unit=unit, progress=progress) as bar:
        for item in items:
            yield item
            bar.update(1)


class LineWatcher:
    """Plain progress lines for work that reports nowhere we can hook (e.g. LitData's workers).

    ``with LineWatcher(desc, total, count, progress):`` polls ``count()`` (work done so far, or None
    for "unknown") once a second in a background thread and feeds :class:`PlainProgress`, so a
    log gets its 10 % / 30 s lines. Does nothing unless ``mode(progress)`` is "lines".
    """

    def __init__(self, desc: str, total: int | None, count: Any, progress: bool | str | None = None,
                 unit: str = "it"):
        self.enabled = mode(progress) == "lines"
        self.count = count
        self.lines = PlainProgress(total, desc, unit=unit) if self.enabled else None
        self._stop: Any = None
        self._thread: Any = None

    def _poll(self) -> None:
        while not self._stop.wait(1.0):
            self._advance()

    def _advance(self) -> None:
        done = self.count()
        # update(0) when nothing moved still lets the 30 s line through.
        self.lines.update(max(0, done - self.lines.n) if done is not None else 0)

    def __enter__(self) -> LineWatcher:
        if self.enabled:
            import threading

            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._poll, name=f"progress {self.lines.desc}", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, kind: Any, error: Any, trace: Any) -> None:
        if not self.enabled:
            return
        self._stop.set()
        self._thread.join()
        self._advance()
        self.lines.__exit__(kind, error, trace)
