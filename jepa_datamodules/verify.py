"""What "this dataset is complete and intact" means, the report, and the stamp.

A full verification checks, from the dataset's spec: archive checksums (when the archives
are kept), that every expected file is there, per-split image counts, the number of
classes, and that a seeded sample of items decodes. When all pass, a stamp file records
the size and mtime of every file it relied on plus the checksums it checked; a later
``prepare_data`` that finds a matching stamp only ``stat``s files (no hashing, no reading).
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .catalog import DatasetSpec
from .readers import Source

STAMP_NAME = ".jepa-verified.json"
STAMP_VERSION = 1


class VerificationError(RuntimeError):
    """A dataset on disk is incomplete or damaged; carries the report."""

    def __init__(self, report: "VerifyReport"):
        self.report = report
        super().__init__(report.summary())


@dataclass
class Check:
    name: str
    expected: str
    found: str
    ok: bool


@dataclass
class VerifyReport:
    dataset: str
    folder: Path
    checks: list[Check] = field(default_factory=list)
    hashed: dict[str, str] = field(default_factory=dict)

    def add(self, name: str, expected: object, found: object, ok: bool) -> bool:
        self.checks.append(Check(name, str(expected), str(found), bool(ok)))
        return ok

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    def fix(self) -> str:
        return (f"re-run `jepa-prepare data={self.dataset} force=true` to fetch and extract it again, "
                f"or replace the files named above under {self.folder}")

    def summary(self) -> str:
        if self.ok:
            return f"{self.dataset} at {self.folder} is complete and intact ({len(self.checks)} checks passed)."
        bad = "; ".join(f"{c.name}: expected {c.expected}, found {c.found}" for c in self.failures)
        return f"{self.dataset} at {self.folder} failed verification ({bad}); {self.fix()}."

    def table(self) -> str:
        rows = [("check", "expected", "found", "ok")] + [(c.name, c.expected, c.found, "ok" if c.ok else "FAIL") for c in self.checks]
        widths = [min(60, max(len(r[i]) for r in rows)) for i in range(4)]
        lines = ["  ".join(cell[:60].ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        return "\n".join(lines)


# ---------------------------------------------------------------------------- stamp
def _tracked(folder: Path, relative_paths: list[str]) -> dict[str, list[int]]:
    state = {}
    for rel in relative_paths:
        st = (folder / rel).stat()
        state[rel] = [st.st_size, st.st_mtime_ns]
    return state


def read_stamp(folder: Path) -> dict | None:
    try:
        return json.loads((folder / STAMP_NAME).read_text())
    except (OSError, ValueError):
        return None


def stamp_matches(folder: Path, spec: DatasetSpec) -> bool:
    """True when a stamp exists for this spec and every file it tracks is unchanged (stat only)."""
    stamp = read_stamp(folder)
    if not stamp or stamp.get("version") != STAMP_VERSION or stamp.get("spec") != spec_fingerprint(spec):
        return False
    try:
        return _tracked(folder, list(stamp["files"])) == stamp["files"]
    except (OSError, KeyError):
        return False


def spec_fingerprint(spec: DatasetSpec) -> str:
    """Changes when the facts a verification relied on change (counts, checksums, files)."""
    facts = {"splits": spec.splits, "classes": spec.num_classes, "files": list(spec.files),
             "archives": {a.filename: a.md5 for a in spec.archives}}
    return json.dumps(facts, sort_keys=True)


def write_stamp(folder: Path, spec: DatasetSpec, report: VerifyReport, tracked: list[str], extra: dict | None = None) -> None:
    from . import __version__

    stamp = {
        "version": STAMP_VERSION,
        "package_version": __version__,
        "dataset": spec.name,
        "spec": spec_fingerprint(spec),
        "files": _tracked(folder, tracked),
        "md5": report.hashed,
        "checks": [[c.name, c.expected, c.found] for c in report.checks],
        **(extra or {}),
    }
    fd, tmp = tempfile.mkstemp(prefix=".stamp-", dir=folder)
    with os.fdopen(fd, "w") as handle:
        json.dump(stamp, handle, indent=1)
    os.replace(tmp, folder / STAMP_NAME)


def remove_stamp(folder: Path) -> None:
    (folder / STAMP_NAME).unlink(missing_ok=True)


# ----------------------------------------------------------------------- the checks
def _decodes(item: object) -> str | None:
    """None when ``item`` is a usable RGB image, else why not."""
    try:
        if isinstance(item, np.ndarray):
            if item.dtype != np.uint8 or item.ndim != 3 or item.shape[2] != 3:
                return f"array of {item.dtype} {item.shape}"
            np.asarray(item).sum()  # touches the bytes (memmaps fail here when truncated)
            return None
        item.load()  # PIL: decodes fully, raises on truncated data
        return None
    except Exception as error:  # noqa: BLE001 - any failure to decode is the finding
        return f"{type(error).__name__}: {error}"


def verify_dataset(spec: DatasetSpec, folder: Path, open_split: Callable[[str], Source], *,
                   splits: dict[str, int] | None = None, full: bool = False, sample: int = 16,
                   md5: Callable[[Path], str] | None = None, known_md5: dict[str, str] | None = None,
                   num_classes: int | None = None, seed: int = 0) -> VerifyReport:
    """Run every check of ``spec`` against ``folder``.

    ``splits`` and ``num_classes`` override the spec's (derived datasets, label options); ``full`` hashes archives
    even when ``known_md5`` already holds a checksum made this run, and decodes every item
    of file-based splits instead of a sample of ``sample``.
    """
    report = VerifyReport(spec.name, folder)
    known_md5 = dict(known_md5 or {})
    for archive in spec.archives:
        path = folder / archive.filename
        if not path.exists() or md5 is None:
            continue
        digest = known_md5.get(archive.filename) if not full else None
        digest = digest or md5(path)
        report.hashed[archive.filename] = digest
        report.add(f"md5 {archive.filename}", archive.md5, digest, digest == archive.md5)
    files_ok = True
    for rel in spec.files:
        path = folder / rel
        size = path.stat().st_size if path.exists() else None
        files_ok &= report.add(f"file {rel}", "present", "missing" if size is None else f"{size} bytes", bool(size))
    if not files_ok:
        return report
    rng = np.random.default_rng(seed)
    for split, expected in (splits or spec.splits).items():
        try:
            source = open_split(split)
        except Exception as error:  # noqa: BLE001 - unreadable split is a finding
            report.add(f"read {split}", "readable", f"{type(error).__name__}: {error}", False)
            continue
        report.add(f"count {split}", expected, len(source), len(source) == expected)
        labeled = source.labels[source.labels >= 0]
        if len(labeled):
            found = len(np.unique(labeled))
            report.add(f"classes {split}", num_classes or spec.num_classes, found,
                       found == (num_classes or spec.num_classes) and labeled.max() < found)
        file_based = hasattr(source, "paths")
        count = len(source) if (full and file_based) else min(sample, len(source))
        picks = rng.choice(len(source), size=count, replace=False) if len(source) else []
        bad = [(int(i), why) for i in picks if (why := _decodes(source.load(int(i)))) is not None]
        if bad and file_based:
            names = ", ".join(f"{source.paths[i]} ({why})" for i, why in bad[:5])
        else:
            names = ", ".join(f"item {i} ({why})" for i, why in bad[:5])
        report.add(f"decode {split}", f"{count} of {count} decode", "all decode" if not bad else f"{len(bad)} fail: {names}", not bad)
    return report
