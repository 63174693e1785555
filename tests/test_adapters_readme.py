"""``jepa_datamodules.adapters`` as the README's "Using your own training code" section
shows them: its three examples (I-JEPA's loop, H-JEPA's feed, boolean masks) run as written,
on a shrunken synthetic set."""

from __future__ import annotations

import re

import torch

from tests.helpers import REPO


README = REPO / "README.md"


def readme_section_code(title: str) -> list[str]:
    text = README.read_text()
    start = text.index(f"## {title}\n")
    section = text[start:text.index("\n## ", start + 1)]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def test_readme_own_training_code_examples_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    blocks = readme_section_code("Using your own training code")
    assert len(blocks) == 3
    old = 'SyntheticDataModule(data_dir="data", batch_size=64)'
    assert old in blocks[0], "the README's I-JEPA example no longer builds the DataModule this test shrinks"
    blocks[0] = blocks[0].replace(old, 'SyntheticDataModule(data_dir="data", batch_size=8, num_train=64, num_test=16, '
                                       'num_workers=0, progress=False)')
    namespace: dict = {}
    B = 8
    exec(compile(blocks[0], "README.md", "exec"), namespace)  # I-JEPA's loop, two epochs
    assert namespace["ipe"] == 8 and namespace["itr"] == 7  # the second epoch ran whole
    assert namespace["imgs"].dtype == torch.float32 and namespace["imgs"].shape == (B, 3, 32, 32)
    assert len(namespace["masks_pred"]) == 4
    k_context, k_target = namespace["masks_enc"][0].shape[1], namespace["masks_pred"][0].shape[1]
    assert namespace["context"].shape == (B, k_context, 16)
    assert namespace["targets"].shape == (4 * B, k_target, 16)
    exec(compile(blocks[1], "README.md", "exec"), namespace)  # H-JEPA's feed
    assert namespace["prediction_mask"].shape == (B, 64) and namespace["prediction_mask"].dtype == torch.bool
    assert namespace["masks"]["level_0"]["targets"].shape == (B, 4, 64)
    exec(compile(blocks[2], "README.md", "exec"), namespace)  # boolean masks
    assert namespace["context"].shape == (B, 64) and namespace["targets"].shape == (B, 4, 64)
    assert torch.equal(namespace["removed"], ~namespace["context"])
