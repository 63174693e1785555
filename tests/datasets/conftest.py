"""The contract's fixtures: each dataset's fake is written and prepared once per session
(lazily, for the datasets the selected tests name), then every test reads that copy with
``$JEPA_CATALOG`` pointed at the fake's counts and checksums."""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import pytest

from tests.helpers.contract import Case, Fake, Upstream, build_datamodule, missing_writer, write_fake
from tests.helpers.fakes import catalog_override
from tests.helpers.loopback import LoopbackServer


class Prepared:
    """Fakes written and prepared once, by case id; the loopback server serves ``root/upstream``."""

    def __init__(self, root: Path, server: LoopbackServer):
        self.root, self.server = root, server
        self.fakes: dict[str, tuple[Fake, Path]] = {}

    def get(self, case: Case) -> tuple[Fake, Path]:
        """(the prepared fake, its ``$JEPA_CATALOG`` file); fails the test where no writer can make it."""
        problem = missing_writer(case)
        if problem is not None:
            pytest.fail(problem)
        if case.id not in self.fakes:
            base = self.root / case.id
            rng = np.random.default_rng(zlib.crc32(case.id.encode()))  # a fixed fake per dataset
            up = Upstream(self.root / "upstream" / case.id, self.server.url_for(case.id), base / "data", rng)
            base.mkdir(parents=True, exist_ok=True)
            fake = write_fake(case, up)
            catalog = catalog_override(base / "catalog.yaml", fake.catalog)
            with pytest.MonkeyPatch.context() as patch:
                patch.setenv("JEPA_CATALOG", str(catalog))
                build_datamodule(case, fake).prepare_data()
            self.fakes[case.id] = (fake, catalog)
        return self.fakes[case.id]


@pytest.fixture(scope="session")
def contract(tmp_path_factory):
    root = tmp_path_factory.mktemp("contract")
    (root / "upstream").mkdir()
    with LoopbackServer(root / "upstream") as server:
        yield Prepared(root, server)


@pytest.fixture
def fake(case, contract, monkeypatch) -> Fake:
    """``case``'s prepared fake, with ``$JEPA_CATALOG`` pointed at its counts for this test."""
    prepared, catalog = contract.get(case)
    monkeypatch.setenv("JEPA_CATALOG", str(catalog))
    return prepared
