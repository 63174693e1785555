"""``datamodule/base.py`` inside apps our users write: a LightningCLI script and a Hydra app of
their own (lightning-hydra-template layout), each in a temporary folder outside the repository
and run as a subprocess, as a user runs them; every constructor argument documented in a
Google ``Args:`` section; the Python default mask is the multi-block recipe."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import jepa_datamodules
from jepa_datamodules import SyntheticDataModule


PUBLIC_DATAMODULES = [getattr(jepa_datamodules, name) for name in jepa_datamodules.__all__
                      if name.endswith("DataModule")]


# A module of the user's own: counts the masks it is given and trains one scalar.
MASK_COUNTER = '''
import lightning
import torch


class MaskCounter(lightning.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def training_step(self, batch, batch_idx):
        print(f"contexts={len(batch['context_masks'])} targets={len(batch['target_masks'])} "
              f"dtype={batch['images'].dtype}", flush=True)
        return (self.weight * batch["images"].mean()).sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)
'''


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "JEPA_DATA_DIR"}
    result = subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=300,
                            stdin=subprocess.DEVNULL, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.mark.parametrize("cls", PUBLIC_DATAMODULES, ids=lambda c: c.__name__)
def test_every_constructor_argument_is_documented_in_a_google_args_section(cls):
    import docstring_parser
    import inspect

    documented: set[str] = set()
    parameters: set[str] = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None or not klass.__module__.startswith("jepa_datamodules"):
            continue
        parsed = docstring_parser.google.parse(inspect.getdoc(init) or "")
        documented |= {p.arg_name.lstrip("*") for p in parsed.params if p.description}
        parameters |= {name for name, p in inspect.signature(init).parameters.items() if name != "self"
                       and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    assert parameters and parameters <= documented, sorted(parameters - documented)


@pytest.mark.slow
def test_lightning_cli_fits_with_the_default_mask_and_a_mask_given_by_class_path(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(MASK_COUNTER + textwrap.dedent('''
        from lightning.pytorch.cli import LightningCLI
        from jepa_datamodules import JEPADataModule

        if __name__ == "__main__":
            LightningCLI(MaskCounter, JEPADataModule, subclass_mode_data=True)
        '''))
    data = ["--data", "jepa_datamodules.SyntheticDataModule", "--data.data_dir", str(tmp_path / "data"),
            "--data.num_train", "64", "--data.num_test", "16", "--data.batch_size", "8", "--data.num_workers", "0",
            "--trainer.accelerator", "cpu", "--trainer.enable_progress_bar", "false"]
    # The default mask (no --data.mask): multi-block, four targets; LightningCLI saves the config.
    first = run(["train.py", "fit", *data, "--trainer.max_steps", "1", "--trainer.limit_val_batches", "0",
                 "--trainer.default_root_dir", str(tmp_path / "runs")], tmp_path)
    assert "contexts=1 targets=4 dtype=torch.float32" in first.stdout
    saved = next((tmp_path / "runs").rglob("config.yaml"))
    assert "class_path: jepa_datamodules.MultiBlockMaskGenerator" in saved.read_text()
    # The saved config runs again, with a mask given by class path and one of its arguments.
    second = run(["train.py", "fit", "--config", str(saved), "--trainer.fast_dev_run", "true",
                  "--data.mask", "jepa_datamodules.MultiBlockMaskGenerator", "--data.mask.num_targets", "2"], tmp_path)
    assert "contexts=1 targets=2" in second.stdout
    # --data.help shows the documented arguments.
    shown = run(["train.py", "fit", "--data.help", "jepa_datamodules.SyntheticDataModule"], tmp_path).stdout
    assert "batch size per device" in shown and "images in the generated train split" in shown


def test_python_default_is_the_multiblock_recipe_and_none_means_no_masks(tmp_path):
    def first_batch(**kwargs):
        dm = SyntheticDataModule(data_dir=tmp_path, num_train=32, num_test=16, batch_size=4, num_workers=0,
                                 progress=False, **kwargs)
        dm.prepare_data()
        return next(iter(dm.train_dataloader()))

    batch = first_batch()
    assert len(batch["context_masks"]) == 1 and len(batch["target_masks"]) == 4
    assert "context_masks" not in first_batch(mask=None)


USER_HYDRA_CONFIG = '''
# A user's own lightning-hydra-template-style config: our groups come from the installed
# package's Hydra plugin; there is no paths, seed or mask key of ours at the root.
defaults:
  - data: synthetic
  - mask: multiblock
  - _self_

trainer:
  fast_dev_run: true
'''

USER_HYDRA_APP = '''
import hydra
import lightning
from hydra.utils import instantiate


@hydra.main(version_base="1.3", config_path="configs", config_name="train")
def main(cfg):
    datamodule = instantiate(cfg.data)
    print(f"data_dir={datamodule.hparams.data_dir} seed={datamodule.hparams.seed}", flush=True)
    trainer = lightning.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                                enable_model_summary=False, **cfg.trainer)
    trainer.fit(MaskCounter(), datamodule=datamodule)


if __name__ == "__main__":
    main()
'''


@pytest.mark.slow
def test_a_users_own_hydra_app_composes_our_data_and_mask_groups(tmp_path):
    app = tmp_path / "my_project"
    (app / "configs").mkdir(parents=True)
    (app / "configs" / "train.yaml").write_text(USER_HYDRA_CONFIG)
    (app / "train.py").write_text(MASK_COUNTER + USER_HYDRA_APP)
    small = ["data.num_train=64", "data.num_test=16", "data.batch_size=8", "data.num_workers=0",
             "mask.num_targets=2", "hydra.run.dir=run"]
    result = run(["train.py", *small], app)
    # Fallbacks: data in ./data (JEPA_DATA_DIR unset), seed 0, the mask group the user chose.
    assert "data_dir=data seed=0" in result.stdout
    assert "contexts=1 targets=2" in result.stdout
    assert (app / "data" / "synthetic").is_dir()
    # lightning-hydra-template's `seed: null` is refused at construction, in one sentence.
    refused = subprocess.run([sys.executable, "train.py", *small, "+seed=null"], cwd=app, capture_output=True,
                             text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert refused.returncode != 0
    assert "seed=None is invalid; allowed is an integer" in refused.stderr
