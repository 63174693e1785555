"""The one sentence for a value outside a fixed set of choices.

torchvision's wording: ``Unknown value 'x' for argument split. Valid values are {train, test}.``
Every setting with a fixed set of values (splits, ``views_on``, ``labels``, ...) refuses a
wrong one through :func:`check_choice`, so the sentence reads the same everywhere.
"""

from __future__ import annotations

from typing import Any, Iterable

from .errors import ConfigError, setting


def choice_message(value: Any, allowed: Iterable[Any], argument: str | None = None, *,
                   noun: str = "value", note: str = "") -> str:
    """``Unknown <noun> '<value>' for <argument>. Valid values are {a, b}<note>.``
    (without `` for <argument>`` when ``argument`` is None)."""
    where = f" for {argument}" if argument else ""
    return f"Unknown {noun} '{value}'{where}. Valid values are {{{', '.join(str(a) for a in allowed)}}}{note}."


def check_choice(argument: str, value: Any, allowed: Iterable[Any], *, note: str = "") -> None:
    """Raise :class:`ConfigError`, a ``ValueError`` (``Unknown value 'x' for argument <argument>. Valid
    values are {...}.``, with ``setting=argument`` and ``allowed``) when ``value`` is not one of
    ``allowed``; ``note`` goes before the final full stop."""
    allowed = list(allowed)
    if value not in allowed:
        raise ConfigError(choice_message(value, allowed, f"argument {argument}", note=note), setting=argument,
                          allowed=allowed)


def check_positive(argument: str, value: Any) -> None:
    """Raise :class:`ConfigError`, a ``ValueError`` (``<argument>=<value> is invalid; allowed is a positive
    integer.``), when ``value`` is not a positive integer."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{setting(argument, value)} is invalid; allowed is a positive integer.", setting=argument,
                          allowed="a positive integer")
