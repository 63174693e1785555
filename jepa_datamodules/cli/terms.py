"""The console's words for the settings and fixes the library marks in its messages.

The library names a setting by its constructor argument (``errors.setting("data_dir", ...)``)
and a fix by what it does (``errors.action("prepare", "cifar10", {...}, force=True)``); here they
become what a user of the console scripts types: ``paths.data_dir=/x``, ``data.mirrors=[...]``,
``jepa-prepare data=cifar10 paths.data_dir=/x force=true``. Where the action concerns the dataset
the user picked on this command line, it repeats the overrides the user typed (so a hint copies
``data.root=...`` or ``+catalog...`` back as typed), else it spells the action's own settings.
"""

from __future__ import annotations

import re
import shlex
from typing import Any

from ..errors import NO_VALUE, JEPADataError, render

# Constructor arguments that are not under data.* on the command line.
_TOP_LEVEL = {"data_dir": "paths.data_dir", "seed": "seed"}
# A command's own settings, by the name the library's functions give them (``evaluation/``: k, shots, ...).
COMMAND_KEYS = {
    "jepa-eval": {"k": "eval.knn.k", "temperature": "eval.knn.temperature", "standardize": "eval.knn.standardize",
                  "epochs": "eval.linear.epochs", "lr": "eval.linear.lr", "weight_decay": "eval.linear.weight_decay",
                  "shots": "eval.shots", "subset": "eval.subset", "protocol": "eval.protocol"},
}
_SCRIPTS = {"prepare": "jepa-prepare", "verify": "jepa-verify", "fit": "jepa-fit", "convert": "jepa-prepare"}
# A word left as written, not quoted: a placeholder for the user to fill in (data=<name>).
_PLACEHOLDER = re.compile(r"^[\w.+]+=<[\w ]+>$")


def override_key(name: str, keys: dict[str, str] | None = None) -> str:
    """The command-line key of the constructor argument ``name``: ``data_dir`` ->
    ``paths.data_dir``, ``seed`` -> ``seed``, one of the command's own ``keys`` as they say,
    anything else ``data.<name>``."""
    return (keys or {}).get(name) or _TOP_LEVEL.get(name, f"data.{name}")


def override_value(value: Any) -> str:
    """A value as Hydra's override grammar reads it: ``true``, ``[a,b]``, a path as is."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(override_value(v) for v in value) + "]"
    return str(value)


class HydraTerms:
    """Marks spoken as command-line overrides. ``typed``: the overrides of this run that pick
    the dataset (see :func:`current_terms`), used for actions on that very dataset; ``keys``:
    the running command's own settings (:data:`COMMAND_KEYS`)."""

    def __init__(self, typed: list[str] | None = None, dataset: str | None = None,
                 keys: dict[str, str] | None = None):
        self.typed, self.dataset, self.keys = typed, dataset, keys

    def setting(self, name: str, value: Any = NO_VALUE) -> str:
        key = override_key(name, self.keys)
        return key if value is NO_VALUE else f"{key}={override_value(value)}"

    def action(self, verb: str, dataset: str, settings: dict[str, Any], options: dict[str, Any]) -> str:
        if self.typed is not None and dataset == self.dataset:
            words = list(self.typed)
        else:
            words = [f"data={dataset}", *(f"{override_key(k)}={override_value(v)}" for k, v in settings.items())]
        if verb == "convert":  # jepa-prepare converts with format=litdata output=...
            options = {"format": "litdata", "output": "<where>", **options}
        words += [f"{k}={override_value(v)}" for k, v in options.items()]
        quoted = (w if _PLACEHOLDER.match(w) else shlex.quote(w) for w in words)
        return "`" + " ".join([_SCRIPTS.get(verb, f"jepa-{verb}"), *quoted]) + "`"


def console_text(text: Any, terms: HydraTerms | None = None) -> str:
    """``text`` (an error, a notice, a report line) as the console shows it."""
    terms = terms or current_terms()
    if isinstance(text, JEPADataError):
        return text.render(terms)
    if isinstance(text, BaseException):  # a Notice: its marked sentence
        text = getattr(text, "message", None) or (text.args[0] if text.args else "")
    return render(str(text), terms)


def typed_overrides() -> list[str] | None:
    """The overrides typed on this run's command line; None outside Hydra."""
    try:
        from hydra.core.hydra_config import HydraConfig

        return list(HydraConfig.get().overrides.task)
    except (ImportError, ValueError):  # not running under Hydra
        return None


def typed_key(word: str) -> str:
    """The key an override sets: ``+data.root=/x`` -> ``data.root``, ``~seed`` -> ``seed``."""
    return word.split("=", 1)[0].lstrip("+~")


def current_terms() -> HydraTerms:
    """The terms of the running command: the dataset and overrides the user typed (none outside Hydra)."""
    task = typed_overrides()
    if task is None:
        return HydraTerms()
    from hydra.core.hydra_config import HydraConfig

    keys = [typed_key(word) for word in task]
    picked = next((word.split("=", 1)[1] for word, key in zip(task, keys) if key == "data"), None)
    kept = [word for word, key in zip(task, keys)
            if key in ("data", "seed", "paths.data_dir") or key.startswith("data.")]
    return HydraTerms(kept if picked else None, picked, COMMAND_KEYS.get(HydraConfig.get().job.name))
