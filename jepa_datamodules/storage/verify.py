"""What "this dataset is complete and intact" means, the report, and the stamp.

A full verification checks, from the dataset's spec: archive checksums (when the archives
are kept), that every expected file is there, per-split image counts, the number of
classes, and that a seeded sample of items decodes. When all pass, a stamp file records
the size and mtime of every file it relied on plus the checksums it checked; a later
``prepare_data`` that finds a matching stamp only ``stat``s files (no hashing, no reading).

The stamp also serves later verifications (``jepa-verify``): an archive whose size and
mtime are still the ones the stamp recorded is not hashed again (its recorded md5 is
reported, marked ``(stamp)``) unless ``full=True``; and an extracted file whose size
differs from the verified copy's is reported by name even when its reader would not
notice (a truncated memory-mapped binary, say).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..catalog import DatasetSpec
from ..formats.base import Source, label_problem
from .files import atomic_write_text

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
    """The checks of one verification; ``bad_files`` (relative to ``folder``) name what to replace."""

    dataset: str
    folder: Path
    checks: list[Check] = field(default_factory=list)
    hashed: dict[str, str] = field(default_factory=dict)
    bad_files: list[str] = field(default_factory=list)
    nothing_on_disk: bool = False
    # The command that prepares this very dataset, with the user's own settings (paths.data_dir=...).
    prepare_command: str = ""

    def add(self, name: str, expected: object, found: object, ok: bool) -> bool:
        self.checks.append(Check(name, str(expected), str(found), bool(ok)))
        return ok

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    def blame(self, relative_path: str) -> None:
        """Name ``relative_path`` (relative to ``folder``) as damaged or missing, once."""
        if relative_path not in self.bad_files:
            self.bad_files.append(relative_path)

    def fix(self) -> str:
        """What to do about the failures, as the end of a sentence."""
        command = self.prepare_command or f"jepa-prepare data={self.dataset}"
        if self.nothing_on_disk:
            return f"nothing of it is on disk yet: run `{command}` to fetch and verify it"
        if self.bad_files:
            shown = ", ".join(self.bad_files[:5]) + (f" and {len(self.bad_files) - 5} more" if len(self.bad_files) > 5 else "")
            what = f"replace {shown} under {self.folder} with an intact copy"
        else:
            what = f"replace the files named above under {self.folder}"
        return f"re-run `{command} force=true` to fetch and extract it again, or {what}"

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
        # Cells are cut at 60 characters to keep the table readable; failures are what the
        # reader acts on, so each is repeated underneath in full (file names included).
        cut = [c for c in self.failures if max(len(c.name), len(c.expected), len(c.found)) > 60]
        lines += [f"FAIL {c.name}: expected {c.expected}, found {c.found}" for c in cut]
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


def recorded_md5(folder: Path) -> dict[str, str]:
    """Archive md5s from the stamp in ``folder`` whose files still have the recorded size and mtime.

    Returns ``{archive file name: md5}``; empty when there is no readable stamp. Any stamp
    version-1 entry counts, whatever spec wrote it: a digest describes the file, not the spec.
    """
    stamp = read_stamp(folder)
    if not isinstance(stamp, dict) or stamp.get("version") != STAMP_VERSION:
        return {}
    files, digests = stamp.get("files"), stamp.get("md5")
    if not isinstance(files, dict) or not isinstance(digests, dict):
        return {}
    still = {}
    for name, digest in digests.items():
        try:
            if _tracked(folder, [name])[name] == files.get(name):
                still[name] = digest
        except OSError:  # gone since: nothing to reuse
            continue
    return still


def recorded_sizes(folder: Path, spec: DatasetSpec) -> dict[str, int]:
    """Byte sizes the stamp recorded for the files of a verified copy of ``spec``; empty if none."""
    stamp = read_stamp(folder)
    if not isinstance(stamp, dict) or stamp.get("version") != STAMP_VERSION or stamp.get("spec") != spec_fingerprint(spec):
        return {}
    files = stamp.get("files")
    if not isinstance(files, dict):
        return {}
    return {rel: int(state[0]) for rel, state in files.items()
            if isinstance(state, list) and len(state) == 2 and isinstance(state[0], int)}


def spec_fingerprint(spec: DatasetSpec) -> str:
    """Changes when the facts a verification relied on change (counts, checksums, files)."""
    facts = {"splits": spec.splits, "classes": spec.num_classes, "files": list(spec.files),
             "archives": {a.filename: a.md5 for a in spec.archives}}
    return json.dumps(facts, sort_keys=True)


def write_stamp(folder: Path, spec: DatasetSpec, report: VerifyReport, tracked: list[str], extra: dict | None = None) -> None:
    from .._version import __version__

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
    # Written like any file (mode from the umask), so the next user can read it and trust the data.
    atomic_write_text(folder / STAMP_NAME, json.dumps(stamp, indent=1))


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
    """Run every check of ``spec`` against ``folder`` and return the report (nothing is raised).

    Args:
        spec: the dataset's spec; its archives, files, splits and class count are checked.
        folder: the dataset folder.
        open_split: opens one split of the data in ``folder``.
        splits: expected image count per split; default None = the spec's (derived datasets).
        full: hash every archive present even when its md5 is known (``known_md5`` or a stamp
            whose recorded size and mtime still match), and decode every item of file-based
            splits instead of a sample; default False.
        sample: items decoded per split when not ``full``; default 16.
        md5: hashes one file; default None = archives are not checked.
        known_md5: ``{archive file name: md5}`` computed this run (while downloading); default none.
        num_classes: expected class count; default None = the spec's.
        seed: picks the decoded sample; default 0.
    """
    report = VerifyReport(spec.name, folder)
    from_this_run = dict(known_md5 or {})
    from_stamp = {} if full else recorded_md5(folder)
    for archive in spec.archives:
        path = folder / archive.filename
        if not path.exists() or md5 is None:
            continue
        if not full and archive.filename in from_this_run:
            digest = found = from_this_run[archive.filename]
        elif archive.filename in from_stamp:
            digest = from_stamp[archive.filename]
            found = f"{digest} (stamp)"
        else:
            digest = found = md5(path)
        report.hashed[archive.filename] = digest
        if not report.add(f"md5 {archive.filename}", archive.md5, found, digest == archive.md5):
            report.blame(archive.filename)
    sizes = recorded_sizes(folder, spec)
    present, files_ok = 0, True
    for rel in spec.files:
        path = folder / rel
        size = path.stat().st_size if path.exists() else None
        verified_size = sizes.get(rel)
        if size is None:
            ok, expected, found = False, "present", "missing"
        elif verified_size is not None:
            # A verified copy had exactly this many bytes: catches truncation by name.
            ok, expected, found = size == verified_size, f"{verified_size} bytes", f"{size} bytes"
        else:
            ok, expected, found = size > 0, "present", f"{size} bytes"
        present += size is not None
        if not report.add(f"file {rel}", expected, found, ok):
            report.blame(rel)
            files_ok = False
    if spec.files and not present and not any((folder / a.filename).exists() for a in spec.archives):
        report.nothing_on_disk = True
    if not files_ok:
        return report  # reading half a dataset would only repeat the same finding less clearly
    rng = np.random.default_rng(seed)
    for split, expected in (splits or spec.splits).items():
        try:
            source = open_split(split)
        except Exception as error:  # noqa: BLE001 - unreadable split is a finding
            text = f"{type(error).__name__}: {error}".replace(f"{folder}{os.sep}", "")
            report.add(f"read {split}", "readable", text, False)
            for rel in spec.files:
                if rel in text:
                    report.blame(rel)
            continue
        report.add(f"count {split}", expected, len(source), len(source) == expected)
        classes = num_classes or spec.num_classes
        out_of_range = label_problem(source.labels, classes, unlabeled_ok="unlabeled" in split)
        allowed = f"all in 0..{classes - 1}" + (" or -1" if "unlabeled" in split else "")
        if not report.add(f"labels {split}", allowed, out_of_range or "all in range", out_of_range is None):
            for path in getattr(source, "label_files", []):
                report.blame(os.path.relpath(path, folder))
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
