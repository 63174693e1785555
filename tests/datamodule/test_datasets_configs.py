"""``datamodule/datasets.py``: the Hydra data configs are the DataModules' constructor arguments, all
of them: every key the README shows as ``data.<key>=...`` is accepted, and a mistyped key names the
close one."""

from __future__ import annotations

import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from hydra.utils import get_class, instantiate

from jepa_datamodules.catalog import get_spec
from tests.helpers import REPO


CONF_DATA = REPO / "conf" / "data"
README = REPO / "README.md"
DATASETS = sorted(p.stem for p in CONF_DATA.glob("*.yaml") if not p.stem.startswith("_"))


def constructor_arguments(cls: type) -> set[str]:
    """Named arguments of ``cls.__init__`` and of the __init__s its ``**kwargs`` reach."""
    names: set[str] = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None or not klass.__module__.startswith("jepa_datamodules"):
            continue
        parameters = inspect.signature(init).parameters.values()
        names |= {p.name for p in parameters if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
        if not any(p.kind == p.VAR_KEYWORD for p in parameters):
            break
    return names


def composed(overrides: list[str]):
    with initialize_config_module(config_module="jepa_datamodules.conf", version_base="1.3"):
        return compose("config", overrides=overrides)


@pytest.mark.parametrize("name", DATASETS)
def test_every_constructor_argument_is_a_key_of_the_data_config(name):
    data = composed([f"data={name}"]).data
    keys = {str(k) for k in data.keys()} - {"_target_"}
    arguments = constructor_arguments(get_class(data._target_))
    if name == "all-auto":  # a bundle of the other configs: only the keys it shares with them
        assert keys <= arguments, sorted(keys - arguments)
    else:
        assert keys == arguments, {"missing": sorted(arguments - keys), "unknown": sorted(keys - arguments)}


def test_the_shared_base_is_not_a_dataset_choice():
    assert (CONF_DATA / "_base_.yaml").exists() and "_base_" not in DATASETS
    from omegaconf import OmegaConf

    assert "_target_" not in OmegaConf.load(CONF_DATA / "_base_.yaml")  # extended, never instantiated alone


# Values for the README's placeholders (N, 0..9, <same URL>, ...).
PLACEHOLDERS = {"global_batch_size": "256", "fold": "3", "input": "/tmp/chunks",
                "storage_options.endpoint_url": "http://127.0.0.1:9000", "mirrors": "[http://mirror.local/datasets]"}


# Keys the README shows as refused (the typo example); test_a_mistyped_key_names_the_close_valid_one runs it.
REFUSED = {"batchsize"}
DATASET_WORDS = {"CIFAR-100": "cifar100", "STL-10": "stl10", "ImageNet-100": "imagenet100", "Imagenette": "imagenette",
                 "Tiny-ImageNet-200": "tinyimagenet"}


# README sections about one dataset: a data.<key> there belongs to it unless the line says data=.
SECTION_DATASETS = {"Your own data": "imagefolder", "ImageNet from Hugging Face (parquet)": "imagenet"}


def readme_data_settings() -> list[tuple[int, str, list[str], list[str]]]:
    """(line number, dataset, overrides with a value, bare keys) per README line naming ``data.<key>``."""
    found = []
    paragraph, section = "", ""
    for number, line in enumerate(README.read_text().splitlines(), 1):
        if line.startswith(("## ", "### ")):
            section = line.lstrip("#").strip()
        paragraph = line if (line.startswith("- ") or not line.strip()) else paragraph + " " + line
        # Hydra overrides only: LightningCLI's --data.<key> flags are another parser's.
        settings = re.findall(r"(?<![-\w])\+?data\.([A-Za-z_][\w.]*)(=[^\s`|)]*)?", line)
        if not settings:
            continue
        choice = re.search(r"\bdata=([\w-]+)", line)
        dataset = choice.group(1) if choice else next(
            (name for word, name in DATASET_WORDS.items() if f"**{word}**" in paragraph),
            SECTION_DATASETS.get(section, "synthetic"))
        if dataset == "X":
            dataset = "cifar10"
        overrides, bare = [], []
        for key, value in settings:
            if key in REFUSED:
                continue
            if not value:
                bare.append(key)
                continue
            value = value[1:]
            if key in PLACEHOLDERS and (not value or re.search(r"[<.]{2}|^N$|\[\.\.\.\]|^<", value) or value == "..."):
                value = PLACEHOLDERS[key]
            prefix = "+" if key.startswith("storage_options.") else ""
            overrides.append(f"{prefix}data.{key}={value}")
        if overrides or bare:
            found.append((number, dataset, overrides, bare))
    return found


def test_readme_names_data_settings():
    settings = readme_data_settings()
    assert sum(len(o) for _, _, o, _ in settings) >= 15  # the parser still finds them


@pytest.mark.parametrize("number,dataset,overrides,bare", readme_data_settings(),
                         ids=lambda v: str(v) if isinstance(v, (int, str)) else None)
def test_every_data_override_the_readme_shows_is_accepted(number, dataset, overrides, bare, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "my_classes.txt").write_text("n01440764\nn01443537\n")  # data.class_list=my_classes.txt
    cfg = composed([f"data={dataset}", f"paths.data_dir={tmp_path}", *overrides])
    for key in bare:
        assert key in cfg.data, f"README line {number} names data.{key}, which data={dataset} lacks"
    dm = instantiate(cfg.data)
    for override in overrides:
        key, value = override.lstrip("+")[len("data."):].split("=", 1)
        if "." not in key and value.isdigit():
            assert str(dm.hparams.get(key, getattr(dm, key, None))) == value


@pytest.mark.slow
def test_a_mistyped_key_names_the_close_valid_one(tmp_path):
    fit = Path(sys.executable).with_name("jepa-fit")
    result = subprocess.run([str(fit), "data=cifar100", "data.batchsize=8", "data.labeltype=coarse"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert result.returncode != 0
    assert "did you mean data.batch_size" in result.stderr
    assert "did you mean data.label_type" in result.stderr


def test_every_data_config_composes_and_instantiates(tmp_path):
    names = sorted(p.stem for p in CONF_DATA.glob("*.yaml") if not p.stem.startswith("_"))  # _base_: shared keys
    assert {"synthetic", "cifar10", "cifar100"} <= set(names)
    with initialize_config_module(config_module="jepa_datamodules.conf", version_base="1.3"):
        for name in names:
            cfg = compose("config", overrides=[f"data={name}", f"paths.data_dir={tmp_path}"])
            dm = instantiate(cfg.data)
            if getattr(dm, "prepare_only", False):  # data=all-auto: a bundle that jepa-prepare runs, no loaders
                assert dm.spec.members and all(get_spec(m).auto_download for m in dm.spec.members)
                assert dm.folder == tmp_path
                continue
            assert dm.spec.name == name.split("_")[0] or dm.spec.name == name
            assert dm.hparams.image_size % dm.hparams.patch_size == 0
            assert str(dm.folder).startswith(str(tmp_path))
