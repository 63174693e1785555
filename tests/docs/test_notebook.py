"""The smoke-test notebook runs top to bottom, headless, offline, and is committed clean; run in
place it leaves nothing under notebooks/ (data and pictures go where the commands put theirs)."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from tests.helpers import REPO

NOTEBOOK = REPO / "notebooks" / "smoke_test.ipynb"


def snapshot(folder: Path) -> dict[str, float]:
    return {str(p.relative_to(folder)): p.stat().st_mtime for p in folder.rglob("*")}


def test_notebook_is_committed_without_outputs():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code and all(not cell.outputs and cell.execution_count is None for cell in code)
    assert "parameters" in code[0].metadata.get("tags", [])


def test_notebook_finds_the_repository_data_folder_from_notebooks(monkeypatch):
    """Without $JEPA_DATA_DIR a kernel started in notebooks/ uses the repository's data/, the
    folder the commands use from the repository root, not a second copy in notebooks/data/."""
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    monkeypatch.delenv("JEPA_DATA_DIR", raising=False)
    monkeypatch.delenv("JEPA_LOG_DIR", raising=False)
    notebook.cells = notebook.cells[:3]  # the parameters and the folder rule only: nothing is generated
    NotebookClient(notebook, timeout=120, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    shown = notebook.cells[2].outputs[0]["text"]
    assert shown.strip() == f"datasets in {REPO / 'data'} | pictures in {REPO / 'outputs' / 'notebook'}"


@pytest.mark.slow
def test_notebook_runs_top_to_bottom_and_leaves_nothing_under_notebooks(tmp_path, monkeypatch):
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    # Same parameter cell a user edits; smaller numbers keep the test quick.
    notebook.cells[1].source = notebook.cells[1].source.replace("TRAIN_STEPS = 30", "TRAIN_STEPS = 5").replace(
        "LOADER_BATCHES = 10", "LOADER_BATCHES = 3")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("JEPA_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("JEPA_LOG_DIR", str(tmp_path / "outputs"))
    before = snapshot(NOTEBOOK.parent)
    # Run in place, as a user does: the kernel starts in notebooks/.
    client = NotebookClient(notebook, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOK.parent)}})
    client.execute()  # raises CellExecutionError on any failing cell
    assert snapshot(NOTEBOOK.parent) == before
    text = "\n".join(out.get("text", "") for cell in notebook.cells for out in cell.get("outputs", []))
    assert "images/s" in text and "loss" in text and "classes" in text
    images = [out for cell in notebook.cells for out in cell.get("outputs", []) if "image/png" in out.get("data", {})]
    assert len(images) >= 3  # masks grid, eval views, loss curve
    assert (tmp_path / "outputs" / "notebook" / "train_masks.png").stat().st_size > 0
    assert (tmp_path / "data" / "synthetic").is_dir()
