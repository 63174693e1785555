"""Checks of a mask generator's settings and call arguments.

Each check returns the value in its plain Python form (ints, floats, tuples) or raises a
``ConfigError`` naming the setting, the value given and what is allowed (``error.setting``
and ``error.allowed`` carry the same facts). They are public so that a new mask type
(``blocks.BlockMasker``) checks its own options the way the built-in ones do.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from ...errors import ConfigError

__all__ = ["Grid", "check_bool", "check_call", "check_floor", "check_grid", "check_int", "check_levels",
           "check_range"]

Grid = tuple[int, int]


def check_grid(grid: Any, name: str = "grid") -> Grid:
    """``grid`` as ``(rows, cols)``: two integers, each >= 1."""
    ok = (isinstance(grid, Sequence) and not isinstance(grid, str) and len(grid) == 2
          and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1 for v in grid))
    if not ok:
        allowed = "two integers (rows, cols), each >= 1"
        raise ConfigError(f"{name}={grid!r} is not allowed: it must be {allowed}.", setting=name, allowed=allowed)
    return int(grid[0]), int(grid[1])


def check_range(name: str, value: Any, *, at_most_one: bool, setting: str | None = None) -> tuple[float, float]:
    """``value`` as a ``(lo, hi)`` pair of floats with ``0 < lo <= hi`` (and ``hi <= 1`` when
    ``at_most_one``: a scale, a fraction of the grid). ``name`` is what the message calls the
    value, ``setting`` the constructor argument it belongs to [``name``]."""
    allowed = "0 < lo <= hi <= 1" if at_most_one else "0 < lo <= hi"

    def bad(reason: str) -> ConfigError:
        return ConfigError(f"{name}={value!r} is not allowed: {reason}.", setting=setting or name,
                           allowed=f"a pair (lo, hi) with {allowed}")

    if isinstance(value, str) or not isinstance(value, Sequence) or len(value) != 2:
        raise bad(f"it must be a pair (lo, hi) with {allowed}")
    try:
        lo, hi = float(value[0]), float(value[1])
    except (TypeError, ValueError):
        raise bad(f"it must be a pair of numbers (lo, hi) with {allowed}") from None
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo <= 0 or (at_most_one and hi > 1):
        raise bad(f"both ends must lie in {'(0, 1]' if at_most_one else '(0, inf)'}")
    if lo > hi:
        raise bad(f"min {lo:g} is greater than max {hi:g}")
    return lo, hi


def check_int(name: str, value: Any, minimum: int, setting: str | None = None) -> int:
    """``value`` as an int >= ``minimum`` (bools are refused); ``name`` and ``setting`` as for
    ``check_range``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        allowed = f"an integer >= {minimum}"
        raise ConfigError(f"{name}={value!r} is not allowed: it must be {allowed}.", setting=setting or name,
                          allowed=allowed)
    return int(value)


def check_bool(name: str, value: Any) -> bool:
    """``value`` as a bool (only True or False, numpy's included)."""
    if not isinstance(value, (bool, np.bool_)):
        raise ConfigError(f"{name}={value!r} is not allowed: it must be true or false.", setting=name,
                          allowed="True or False")
    return bool(value)


def check_floor(value: Any) -> float:
    """``placement_floor`` as a float in [0, 1]."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
        raise ConfigError(f"placement_floor={value!r} is not allowed: it must be a number in [0, 1].",
                          setting="placement_floor", allowed="a number in [0, 1]")
    return float(value)


def check_call(batch_size: Any, generator: Any) -> int:
    """The arguments of ``generator(batch_size, torch_generator)``: returns ``batch_size`` as an int."""
    batch_size = check_int("batch_size", batch_size, 1)
    if not isinstance(generator, torch.Generator):
        raise ConfigError(f"generator={generator!r} is not allowed: pass a torch.Generator seeded by the caller.",
                          setting="generator", allowed="a CPU torch.Generator")
    if generator.device.type != "cpu":
        raise ConfigError(f"generator on device {generator.device} is not allowed: masks are drawn on the CPU, "
                          "so pass a CPU torch.Generator.", setting="generator", allowed="a CPU torch.Generator")
    return batch_size


def check_levels(levels: Any) -> tuple[dict[str, Any], ...]:
    """Hierarchical ``levels``: a non-empty list of ``{name, scale, aspect, count}`` mappings with
    distinct names; ``aspect`` defaults to (0.75, 1.5). Returns checked copies."""
    allowed = "a non-empty list of {name, scale, aspect, count} mappings"
    if isinstance(levels, (str, Mapping)) or not isinstance(levels, Sequence) or len(levels) == 0:
        raise ConfigError(f"levels={levels!r} is not allowed: it must be {allowed}.", setting="levels",
                          allowed=allowed)
    checked = []
    seen: set[str] = set()
    for i, level in enumerate(levels):
        if not isinstance(level, Mapping):
            raise ConfigError(f"levels[{i}]={level!r} is not allowed: each level must be a mapping with keys "
                              "name, scale, count and optionally aspect.", setting="levels", allowed=allowed)
        unknown = set(level) - {"name", "scale", "aspect", "count"}
        missing = {"name", "scale", "count"} - set(level)
        if unknown or missing:
            raise ConfigError(f"levels[{i}] has keys {sorted(map(str, level))}, which is not allowed: it needs name, "
                              "scale and count, may have aspect, and nothing else.", setting="levels", allowed=allowed)
        name = level["name"]
        if not isinstance(name, str) or not name or name in seen:
            raise ConfigError(f"levels[{i}] name={name!r} is not allowed: names must be distinct non-empty strings.",
                              setting="levels", allowed="distinct non-empty level names")
        seen.add(name)
        checked.append({
            "name": name,
            "scale": check_range(f"levels[{i}] ({name}) scale", level["scale"], at_most_one=True,
                                 setting="levels"),
            "aspect": check_range(f"levels[{i}] ({name}) aspect", level.get("aspect", (0.75, 1.5)),
                                  at_most_one=False, setting="levels"),
            "count": check_int(f"levels[{i}] ({name}) count", level["count"], 1, setting="levels"),
        })
    return tuple(checked)
