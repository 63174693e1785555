"""The package's errors, and the words its messages use for settings and fixes.

Every error the package raises on purpose derives from :class:`JEPADataError`; the console
scripts turn exactly these into one ``error:`` sentence (exit 2, a failed verification 1) and
leave anything else its traceback. A mistake in a setting is a :class:`ConfigError`, which is
also a ``ValueError``, so ``except ValueError`` keeps working for Python callers.

Messages are facts: which setting, which path, what is allowed. A setting or a fix the user can
run is not spelled in the message text but marked in it (:func:`setting`, :func:`action`), and
rendered when the message is shown: ``str(error)`` speaks Python (``data_dir='/scratch'``,
``prepare_data()``), while the console scripts render the same marks as Hydra overrides
(``paths.data_dir=/scratch``, ``jepa-prepare data=cifar10 ...``; ``cli/terms.py``). The same
marks work in a :class:`~jepa_datamodules.notices.Notice`. The library never writes a command
line itself.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

# A mark is JSON between two private-use characters, so no real message text can look like one.
_OPEN, _CLOSE = "\ue000", "\ue001"
_MARK = re.compile(f"{_OPEN}(.*?){_CLOSE}", re.S)
NO_VALUE: Any = object()  # a setting named without its value


def _plain(value: Any) -> Any:
    """A value as JSON can carry it: paths as strings, tuples as lists."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return value


def setting(name: str, value: Any = NO_VALUE) -> str:
    """Mark the setting ``name`` (a constructor argument's name: ``data_dir``, ``mirrors``,
    ``variant``, ...), with its value when given. Python: ``data_dir='/x'`` (or ``data_dir``);
    the console: ``paths.data_dir=/x``."""
    fact: dict[str, Any] = {"setting": name}
    if value is not NO_VALUE:
        fact["value"] = _plain(value)
    return f"{_OPEN}{json.dumps(fact)}{_CLOSE}"


def action(verb: str, dataset: str, settings: Mapping[str, Any] | None = None, **options: Any) -> str:
    """Mark something the user can run on the dataset ``dataset``: ``verb`` is ``"prepare"``,
    ``"verify"`` or ``"fit"``; ``settings`` pick the dataset and its folder (constructor
    arguments: ``data_dir``, ``mirrors``, ``seed``, the dataset's own options); ``options`` are
    the action's own (``force=True``, ``full=True``). Python: ``prepare_data()`` of a DataModule
    with those arguments; the console: ``jepa-prepare data=<dataset> ...``."""
    fact = {"action": verb, "dataset": dataset,
            "settings": {k: _plain(v) for k, v in (settings or {}).items()},
            "options": {k: _plain(v) for k, v in options.items()}}
    return f"{_OPEN}{json.dumps(fact)}{_CLOSE}"


def with_options(marked_action: str, **options: Any) -> str:
    """The action ``marked_action`` (from :func:`action`) with ``options`` added (``force=True``)."""
    match = _MARK.fullmatch(marked_action)
    if not match or "action" not in (fact := json.loads(match.group(1))):
        raise TypeError(f"with_options takes a mark from action(), not {marked_action!r}")
    fact["options"] = {**fact["options"], **{k: _plain(v) for k, v in options.items()}}
    return f"{_OPEN}{json.dumps(fact)}{_CLOSE}"


class Terms(Protocol):
    """How marks are spoken: by Python (:data:`PYTHON`) or by the console scripts (``cli/terms.py``)."""

    def setting(self, name: str, value: Any = NO_VALUE) -> str: ...

    def action(self, verb: str, dataset: str, settings: dict[str, Any], options: dict[str, Any]) -> str: ...


class PythonTerms:
    """Marks in Python's words: ``data_dir='/x'``; ``prepare_data()`` of a DataModule made with
    ``data_dir='/x', force=True``; ``verify(full=True)``."""

    _METHODS = {"prepare": "prepare_data()", "fit": "Trainer.fit()", "convert": "convert_to_litdata(dm, output)"}

    def setting(self, name: str, value: Any = NO_VALUE) -> str:
        return name if value is NO_VALUE else f"{name}={value!r}"

    def action(self, verb: str, dataset: str, settings: dict[str, Any], options: dict[str, Any]) -> str:
        if verb == "verify":  # a method argument, not a constructor argument
            full = options.pop("full", None)
            call = f"verify({'full=True' if full else ''})"
        else:
            call = self._METHODS.get(verb, f"{verb}()")
        arguments = ", ".join(f"{k}={v!r}" for k, v in {**settings, **options}.items())
        made = f" with {arguments}" if arguments else ""
        return f"`{call}` of the {dataset} DataModule{made}"


PYTHON = PythonTerms()


def render(text: str, terms: Terms = PYTHON) -> str:
    """``text`` with its marks spoken in ``terms`` (default: Python's)."""

    def speak(match: re.Match[str]) -> str:
        fact = json.loads(match.group(1))
        if "setting" in fact:
            return terms.setting(fact["setting"], fact.get("value", NO_VALUE))
        return terms.action(fact["action"], fact["dataset"], dict(fact["settings"]), dict(fact["options"]))

    return _MARK.sub(speak, str(text))


class JEPADataError(Exception):
    """The base of every error the package raises on purpose: a dataset, a folder, a file or a
    setting that cannot be used as asked. ``str(error)`` is one sentence in Python's terms;
    :meth:`render` speaks it in other terms (the console's).

    Facts, where the raiser knows them: ``setting`` (the constructor argument concerned),
    ``path`` (the file or folder), ``allowed`` (what the setting or file may be). Console
    scripts exit with ``exit_status``."""

    exit_status = 2

    def __init__(self, message: str, *, setting: str | None = None, path: str | Path | None = None,
                 allowed: Any = None):
        # args (and so repr(), which frameworks such as Hydra print) hold the Python wording;
        # ``message`` keeps the marks for renderings in other terms.
        super().__init__(render(message))
        self.message = message
        self.setting, self.allowed = setting, allowed
        self.path = Path(path) if path is not None else None

    def __str__(self) -> str:
        return render(self.message)

    def __reduce__(self) -> tuple:
        # Across processes (a DataLoader worker, a DDP rank) the error keeps its marks and facts;
        # Exception's own pickling would call __init__ with the rendered text alone.
        return _restore, (type(self), self.args), self.__dict__

    def render(self, terms: Terms = PYTHON) -> str:
        """The message with its settings and fixes spoken in ``terms``."""
        return render(self.message, terms)


def _restore(kind: type[JEPADataError], args: tuple) -> JEPADataError:
    error = kind.__new__(kind)
    Exception.__init__(error, *args)
    return error


class ConfigError(JEPADataError, ValueError):
    """A setting has a value outside what is allowed (``allowed`` says what is)."""


class StorageError(JEPADataError, RuntimeError):
    """The data folder cannot be used as asked: a file where a folder should be, read-only or
    unwritable, or a full disk. The message names the path, what was to be written and the fix."""


class DownloadError(JEPADataError, RuntimeError):
    """A download or its checksum failed, or there is no room for it; the message says what to do."""


class ExtractError(JEPADataError, RuntimeError):
    """An archive cannot be unpacked safely or completely: a member escapes the folder, is a
    link or a device, or the archive is damaged."""


class FormatError(JEPADataError, RuntimeError):
    """A file on disk is not in the format its dataset promises."""


class OwnFolderError(FormatError, FileNotFoundError):
    """An own image folder (``ImageFolderDataModule``) cannot be used: missing, empty, or laid out
    otherwise than a class folder per class."""


class MissingFilesError(FormatError, FileNotFoundError):
    """A dataset's files or folders are not where its format expects them (``path`` names where)."""


class UndecodableImage(FormatError, ValueError):
    """The bytes are not an image this package can decode (``str`` says why)."""


class ImageNetSetupError(JEPADataError, RuntimeError):
    """ImageNet is missing or unusable; the message says what to download and where to put it."""


class VerificationError(JEPADataError, RuntimeError):
    """A dataset on disk is incomplete or damaged; carries the report (``report``)."""

    exit_status = 1

    def __init__(self, report: Any):
        self.report = report
        super().__init__(report.summary(terms=None), path=getattr(report, "folder", None))


class PrepareAllError(DownloadError):
    """Some datasets of a bundle could not be prepared; the others were. Names the failed ones."""


__all__ = ["JEPADataError", "ConfigError", "StorageError", "DownloadError", "ExtractError", "FormatError",
           "OwnFolderError", "MissingFilesError", "UndecodableImage", "ImageNetSetupError", "VerificationError", "PrepareAllError",
           "setting", "action", "with_options", "render", "PYTHON", "Terms"]
