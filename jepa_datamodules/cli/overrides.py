"""The command line checked before Hydra composes it: a mistake of the user's is one ``error:``
sentence and exit status 2, never Hydra's block of search paths and option lists.

- A group option that does not exist (``data=cifar-10``, ``data=_base_``): the close option
  and every real one (files named ``_*`` are shared keys, never choices).
- A key the composed config lacks (``data.batchsize=8``, ``+data.batchsize=8``, ``dat=cifar10``):
  the close key. A ``+key`` is refused only where it cannot work: inside a config of ours
  (``data``), whose keys are exactly the constructor's arguments, or when a close key exists.
- A bad environment setting (``JEPA_PROGRESS_MIN_SECONDS=abc``): checked once, here, so it is
  not raised again while an error is being reported.

Anything else (a quoting mistake Hydra's parser refuses, a sweep over groups) is left to Hydra.
Imports neither torch nor Lightning.
"""

from __future__ import annotations

import difflib
from typing import Any

from ..choices import choice_message
from ..errors import ConfigError
from .console import group_options

# The datasets are the options of the data group; the sentence names them so.
_NOUN = {"data": "dataset", "mask": "mask recipe", "trainer": "trainer", "paths": "paths setting", "bench": "bench setting"}


def command_line_problems(argv: list[str], config: dict[str, str]) -> list[ConfigError]:
    """The mistakes in ``argv``'s overrides, one :class:`ConfigError` each (its sentence names the
    override, ``setting`` its key, ``allowed`` the valid options where they are few); empty when
    Hydra may go on.

    ``config``: ``config_module`` and ``config_name`` of the app (composed only when a key is set).
    """
    problem = environment_problem()
    if problem:
        return [problem]
    words = [arg for arg in argv[1:] if "=" in arg and not arg.startswith("-")]
    if not words:
        return []
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        overrides = OverridesParser.create().parse_overrides(words)
    except Exception:  # noqa: BLE001 - Hydra's parser explains its own syntax errors
        return []
    groups = group_options()
    keys, choices, swept, problems = [], [], False, []
    for override in overrides:
        name = override.key_or_group
        if name.startswith("hydra") or override.is_delete():
            continue
        if name in groups:
            values = list(override.sweep_string_iterator()) if override.is_sweep_override() else \
                [override.get_value_element_as_str()]
            problems += [ConfigError(unknown_option(name, value, groups[name]), setting=name, allowed=groups[name])
                         for value in values if value not in groups[name]]
            swept = swept or override.is_sweep_override()
            choices.append(override.input_line)
        else:
            keys.append(override)
    if problems or not keys or swept:  # a sweep over datasets: each job's keys differ, Hydra checks them per job
        return problems
    cfg = _compose(config, choices)
    if cfg is None:
        return []
    problems = [(override.key_or_group, unknown_key(cfg, override.key_or_group, override.get_value_element_as_str(),
                                                    added=override.is_add() or override.is_force_add(), groups=groups))
                for override in keys]
    return [ConfigError(sentence, setting=key) for key, sentence in problems if sentence]


def environment_problem() -> ConfigError | None:
    """A package setting read from the environment that is invalid (its :class:`ConfigError`)."""
    try:
        from .. import progress  # noqa: F401 - reads $JEPA_PROGRESS_MIN_SECONDS on import
    except ConfigError as error:
        return error
    return None


def unknown_option(group: str, value: str, options: list[str]) -> str:
    """``Unknown value 'cifar-10' for data. Valid values are {...}; did you mean data=cifar10?``"""
    sentence = choice_message(value, options, group, noun=_NOUN.get(group, "option"))
    close = difflib.get_close_matches(value.lower(), options, n=1, cutoff=0.5)
    if value.startswith("_"):
        sentence = sentence[:-1] + f" ({group}/{value}.yaml holds the keys every {group} config shares, it is not a choice)."
    return sentence[:-1] + f"; did you mean {group}={close[0]}?" if close else sentence


def unknown_key(cfg: Any, key: str, value: str, *, added: bool, groups: dict[str, list[str]]) -> str | None:
    """One sentence when ``key`` (dotted) is not in the composed ``cfg`` and setting it cannot work."""
    from omegaconf import DictConfig

    *parents, last = key.split(".")
    node: Any = cfg
    for part in parents:
        node = node.get(part) if isinstance(node, DictConfig) else None
    if not isinstance(node, DictConfig) or last in node:
        return None
    valid = [str(k) for k in node.keys() if not str(k).startswith("_")]
    close = difflib.get_close_matches(last, valid, n=2, cutoff=0.6)
    ours = str(node.get("_target_", "")).startswith("jepa_datamodules.")
    if added and not close and not ours:
        return None  # a new key of the user's own (+trainer.precision=16): Hydra appends it
    where = ".".join(parents)
    of = f" of {where}" if where else ""
    if close:
        def spelled(name: str) -> str:
            full = f"{where}.{name}" if where else name
            return f"{full}={value}" if full in groups and value in groups[full] else full

        also = "".join(f" or {spelled(c)}" for c in close[1:])
        return f"{key} is not a setting{of}; did you mean {spelled(close[0])}{also}? (`--cfg job` lists every setting.)"
    if ours:
        return (f"{key} is not a setting{of}: {node.get('_target_')} takes only the keys that `--cfg job` lists "
                f"under {where}.")
    return (f"{key} is not a setting{of}; `--cfg job` lists every setting, and +{key}={value} adds a key of "
            "your own.")


def _compose(config: dict[str, str], choices: list[str]) -> Any:
    """The app's config with the group choices of the command line, or None if it does not compose."""
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    try:
        with initialize_config_module(config_module=config["config_module"], version_base=config["version_base"]):
            return compose(config["config_name"], overrides=choices)
    except Exception:  # noqa: BLE001 - whatever stops composing, Hydra itself reports it next
        return None
    finally:
        GlobalHydra.instance().clear()
