"""The README's evaluation example, run as written except for where the data comes from and
a shot count and a batch size the small fake CIFAR-100 (2 train images per class) can give."""

from __future__ import annotations

import re

import torch.nn.functional as F

from tests.helpers import REPO


def test_readme_evaluation_example_builds_its_loaders(served, tmp_path):
    server, _ = served
    blocks = re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(), flags=re.S)
    code = next(block for block in blocks if "EvalDataModule" in block)
    substitutions = {
        'CIFAR100DataModule(data_dir="data", batch_size=256)':
            f'CIFAR100DataModule(data_dir={str(tmp_path / "data")!r}, batch_size=64, num_workers=0, '
            f'mirrors=[{server.url!r}], image_size=32, patch_size=4, progress=False)',
        "shots=10)": "shots=2)",
    }
    for old, new in substitutions.items():
        assert old in code, f"the README's evaluation example no longer contains {old!r}"
        code = code.replace(old, new)
    namespace = {"my_features": lambda model, images: F.adaptive_avg_pool2d(images, 2).flatten(1)}
    exec(compile(code, "README.md", "exec"), namespace)
    namespace["data"].prepare_data()
    knn, probe, monitor = namespace["knn"], namespace["probe"], namespace["monitor"]
    assert (knn.describe()["train"], knn.describe()["eval"]) == (200, 100)
    assert probe.describe()["train"] == 200 and probe.describe()["shots"] == 2  # 2 per class of the 100
    batch = next(iter(probe.train_dataloader()))
    assert set(batch) == {"images", "labels", "indices"} and batch["images"].shape[1:] == (3, 32, 32)
    assert monitor.every_n_epochs == 5 and monitor.eval_datamodule is knn


def test_readme_eval_summary_is_the_one_jepa_eval_prints():
    """The summary the README shows has jepa-eval's fields, in its order."""
    shown = re.search(r"== jepa-eval summary ==\n(.*?)```", (REPO / "README.md").read_text(), flags=re.S).group(1)
    fields = [line.split(":", 1)[0] for line in shown.splitlines() if ":" in line]
    source = (REPO / "jepa_datamodules" / "cli" / "evaluate.py").read_text()
    printed = re.findall(r'f"(\w[\w -]*?):\s{2,}', source)
    assert fields == printed[:len(fields)] == ["dataset", "checkpoint", "features", "extraction", "kNN top-1",
                                               "linear top-1", "picture", "wall time"]
