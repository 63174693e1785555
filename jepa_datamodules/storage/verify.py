"""The verification engine's report and file checks, and the stamp that records a verified copy.

A dataset's ``verify()`` is a composition of checks that each add rows to one
:class:`VerifyReport`: here the ones that need no reader (:func:`check_archives`: archive
md5s; :func:`check_files`: expected files present, with the sizes a verified copy had), in
``formats/dataset.py`` the per-split ones that open a split (readable, count, labels in range,
classes, a seeded sample that decodes: ``check_split``). When all pass, a stamp file records
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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..catalog import ArchiveSpec, DatasetSpec
from ..errors import VerificationError, action, with_options
from .files import atomic_write_text

__all__ = ["Check", "VerifyReport", "VerificationError", "check_archives", "check_files", "nothing_on_disk",
           "read_stamp", "stamp_matches", "recorded_md5", "recorded_sizes", "write_stamp", "remove_stamp"]

STAMP_NAME = ".jepa-verified.json"
STAMP_VERSION = 1


@dataclass
class Check:
    name: str
    expected: str
    found: str
    ok: bool
    skipped: bool = False  # an unreadable file the dataset can do without (an own folder's): shown, not failed


@dataclass
class VerifyReport:
    """The checks of one verification; ``bad_files`` (relative to ``folder``) name what to replace."""

    dataset: str
    folder: Path
    checks: list[Check] = field(default_factory=list)
    hashed: dict[str, str] = field(default_factory=dict)
    bad_files: list[str] = field(default_factory=list)
    nothing_on_disk: bool = False
    # The marked fix that prepares this very dataset with the user's own settings (errors.action).
    prepare_command: str = ""
    # Whether preparing with force=True can fetch and extract the copy again (it has archives); an own
    # folder or a set of parquet shards can only be replaced by its owner.
    refetchable: bool = True

    def add(self, name: str, expected: object, found: object, ok: bool) -> bool:
        self.checks.append(Check(name, str(expected), str(found), bool(ok)))
        return ok

    def skip(self, relative_path: str, why: str) -> None:
        """Name ``relative_path`` as unreadable but skipped in training: the copy stays usable."""
        self.checks.append(Check(f"unreadable {relative_path}", "decodes", why, True, skipped=True))

    @property
    def skipped(self) -> list[str]:
        """The unreadable files that training skips (relative to ``folder``)."""
        return [c.name[len("unreadable "):] for c in self.checks if c.skipped]

    def verdict(self) -> str:
        """What a passing verification found: "complete and intact", or "usable, N unreadable files skipped (...)"."""
        skipped = self.skipped
        if not skipped:
            return "complete and intact"
        shown = ", ".join(skipped[:5]) + (f" and {len(skipped) - 5} more" if len(skipped) > 5 else "")
        return f"usable, {len(skipped)} unreadable file{'s' if len(skipped) != 1 else ''} skipped ({shown})"

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
        command = self.prepare_command or action("prepare", self.dataset)
        if self.nothing_on_disk:
            return f"nothing of it is on disk yet: run {command} to fetch and verify it"
        if self.bad_files:
            shown = ", ".join(self.bad_files[:5]) + (f" and {len(self.bad_files) - 5} more" if len(self.bad_files) > 5 else "")
            what = f"replace {shown} under {self.folder} with an intact copy"
        else:
            what = f"replace the files named above under {self.folder}"
        if not self.refetchable:
            return what
        return f"re-run {with_options(command, force=True)} to fetch and extract it again, or {what}"

    def summary(self) -> str:
        if self.ok:
            return f"{self.dataset} at {self.folder} is {self.verdict()} ({len(self.checks)} checks passed)."
        bad = "; ".join(f"{c.name}: expected {c.expected}, found {c.found}" for c in self.failures)
        return f"{self.dataset} at {self.folder} failed verification ({bad}); {self.fix()}."

    def table(self) -> str:
        rows = [("check", "expected", "found", "ok")] + [(c.name, c.expected, c.found, "skipped" if c.skipped else "ok" if c.ok else "FAIL") for c in self.checks]
        widths = [min(60, max(len(r[i]) for r in rows)) for i in range(4)]
        lines = ["  ".join(cell[:60].ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        # Cells are cut at 60 characters to keep the table readable; failures are what the
        # reader acts on, so each is repeated underneath in full (file names included).
        cut = [c for c in self.failures if max(len(c.name), len(c.expected), len(c.found)) > 60]
        lines += [f"FAIL {c.name}: expected {c.expected}, found {c.found}" for c in cut]
        return "\n".join(lines)


# ---------------------------------------------------------------------------- file checks
def check_archives(report: VerifyReport, archives: Sequence[ArchiveSpec], *, md5: Callable[[Path], str] | None,
                   known_md5: Mapping[str, str] | None = None, full: bool = False) -> bool:
    """One row ``md5 <archive>`` per archive present in ``report.folder``; a wrong digest
    blames the archive. Returns True when every checked digest matches.

    Args:
        report: gets the rows; its ``hashed`` records each digest (the stamp keeps them).
        archives: the dataset's archives (``spec.archives``); absent ones are not checked.
        md5: hashes one file; None = no archive is checked.
        known_md5: ``{archive file name: md5}`` computed this run (while downloading); trusted
            unless ``full``. Default none.
        full: hash every archive present, even one whose md5 is known this run or recorded by
            a stamp whose size and mtime still match (then the row says ``(stamp)``); default False.
    """
    folder, ok = report.folder, True
    from_this_run = dict(known_md5 or {})
    from_stamp = {} if full else recorded_md5(folder)
    for archive in archives:
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
            ok = False
    return ok


def check_files(report: VerifyReport, files: Sequence[str], verified_sizes: Mapping[str, int] | None = None) -> bool:
    """One row ``file <name>`` per expected file (relative to ``report.folder``): present and
    not empty, or, where a verified copy recorded its size (``verified_sizes``, from
    :func:`recorded_sizes`), exactly that many bytes, so a truncated file is named even when
    its reader would not notice. Failures are blamed. Returns True when every file passes."""
    sizes, ok = dict(verified_sizes or {}), True
    for rel in files:
        path = report.folder / rel
        size = path.stat().st_size if path.exists() else None
        verified_size = sizes.get(rel)
        if size is None:
            good, expected, found = False, "present", "missing"
        elif verified_size is not None:
            good, expected, found = size == verified_size, f"{verified_size} bytes", f"{size} bytes"
        else:
            good, expected, found = size > 0, "present", f"{size} bytes"
        if not report.add(f"file {rel}", expected, found, good):
            report.blame(rel)
            ok = False
    return ok


def nothing_on_disk(folder: Path, spec: DatasetSpec) -> bool:
    """True when none of ``spec``'s files and archives is in ``folder``: the fix is to prepare
    it, not to repair it (:meth:`VerifyReport.fix`)."""
    return bool(spec.files) and not any((folder / rel).exists() for rel in spec.files) \
        and not any((folder / a.filename).exists() for a in spec.archives)


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
