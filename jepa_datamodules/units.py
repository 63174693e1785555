"""Sizes as the package prints them: one formatter for every byte count a user reads (free
space, downloads, progress lines, ``jepa-datasets``), in decimal units as disk tools report
them (``df -H``, a vendor's "138 GB"), so the figures of one message can be compared."""

from __future__ import annotations


def human_bytes(n: float, digits: int = 1) -> str:
    """``n`` bytes in decimal units: ``512 B``, ``2.7 GB``; ``digits`` after the point [1]."""
    value = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(value) < 1000 or unit == "TB":
            return f"{int(value)} B" if unit == "B" else f"{value:.{digits}f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")
