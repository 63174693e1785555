"""The verification report and the stamp that records a verified copy.

The checks themselves open the dataset's splits, so they live with the formats
(``formats/dataset.py``: archive checksums, expected files, per-split counts, classes, a
seeded sample that must decode). When all pass, a stamp file records
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
from dataclasses import dataclass, field
from pathlib import Path

from ..catalog import DatasetSpec
from ..errors import VerificationError, action, with_options
from .files import atomic_write_text

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
    # Whether `prepare force=true` can fetch and extract the copy again (it has archives); an own
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
