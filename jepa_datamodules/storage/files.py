"""Writing into data folders that are shared, read-only or full, and saying so in one sentence.

Clusters keep datasets on shared (often read-only) mounts, scratch disks fill up and jobs get
killed. Everything in this package that writes into a data folder goes through the helpers here:

* :class:`StorageError`: the one exception for filesystem mistakes (a ``data_dir`` that is a
  file, a read-only or unwritable folder, a full disk); ``str(error)`` is the one sentence the
  console scripts print before exiting with status 2.
* :func:`atomic_write` (a file) and :func:`staging_folder` (a folder) create what they write the
  way ``open`` and ``mkdir`` do, so the umask decides the modes: under ``umask 022`` others can
  read a dataset one user prepared, under ``umask 002`` the group can also replace it.
  (``tempfile.mkstemp`` / ``mkdtemp`` would make them ``0600`` / ``0700``.)
* :func:`free_space` is the one free-space probe; :func:`check_free_space` turns it into an error.
* :func:`unwritable` says why a folder cannot be written; :func:`storage_error` turns an
  ``OSError`` (EROFS, EACCES, ENOSPC, ...) into a :class:`StorageError` naming the path and the fix.
* :func:`remove_stale_staging` and :func:`staging_entries` find what killed runs left behind
  (``.<name>.partial-*`` staging folders, ``.<name>.old-*`` swaps, ``.<name>.*.tmp`` files).
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import secrets
import shutil
import time
from pathlib import Path
from typing import IO, Callable

from ..errors import StorageError, setting
from ..units import human_bytes  # re-exported: the one byte formatter

try:  # flock tells a lock held by a live process from one left by a dead one (POSIX only)
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

DATA_DIR_HINT = f"point {setting('data_dir')} (or $JEPA_DATA_DIR) at"

# errnos that mean "this place cannot take the write", not "the data is bad".
_STORAGE_ERRNOS = {errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EDQUOT, errno.ENOTDIR,
                   errno.EISDIR, errno.EEXIST}
_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}

# Hidden names that only ever hold unfinished work (staging_folder's, swap_in's).
_STAGING = re.compile(r"^\.(?P<target>.+?)\.(?P<kind>partial|old)-[0-9a-f]+$")
_TEMP = re.compile(r"^\.(?P<target>.+)\.[0-9a-zA-Z_]+\.tmp$|^\.stamp-\w+$")
# A temporary file younger than this may belong to a writer that is still running.
TEMP_GRACE_S = 3600.0


# ------------------------------------------------------------------------------ sizes and space
def nearest_existing(path: Path) -> Path:
    """``path`` if it exists, else its closest existing parent (absolute)."""
    probe = Path(path).expanduser().absolute()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return probe


def free_space(path: Path) -> tuple[int, Path]:
    """Free bytes on the filesystem that holds (or would hold) ``path``, and the folder measured."""
    probe = nearest_existing(path)
    return shutil.disk_usage(probe).free, probe


def check_free_space(folder: Path, needed_bytes: int, what: str) -> None:
    """Raise :class:`StorageError` if the disk holding ``folder`` has less than ``needed_bytes`` free.

    ``folder`` need not exist yet: the nearest existing parent is measured. Never prompts.

    Args:
        folder: where the bytes will be written.
        needed_bytes: bytes that will be written there; zero or less always passes.
        what: what the space is for, completing "Not enough free space to ...", e.g. "download x.tar".
    """
    if needed_bytes <= 0:
        return
    free, _ = free_space(folder)
    if needed_bytes > free:
        needed_text, free_text = _pair(needed_bytes, free)
        raise StorageError(
            f"Not enough free space to {what}: needs {needed_text} at {folder}, only {free_text} free; "
            f"free space there or {DATA_DIR_HINT} a disk with room.", setting="data_dir", path=folder
        )


def _pair(needed: int, free: int) -> tuple[str, str]:
    needed_text, free_text = human_bytes(needed), human_bytes(free)
    if needed_text == free_text:  # "needs 2.7 GB, only 2.7 GB free" would read as a bug
        needed_text, free_text = human_bytes(needed, 3), human_bytes(free, 3)
    return needed_text, free_text


# ------------------------------------------------------------------------------ why not writable
def is_storage_error(exc: BaseException) -> bool:
    """True for an ``OSError`` about the place written to (read-only, permissions, full, not a folder)."""
    return isinstance(exc, OSError) and exc.errno in _STORAGE_ERRNOS


def _read_only(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):
        return False


def unwritable(folder: Path) -> str | None:
    """Why files cannot be created in ``folder`` (or in the folder that would hold it), or None.

    The reason completes "<folder> ...": "is a file, not a folder", "is on a read-only file
    system", "cannot be created: /x is a file", "is not writable by you". Nothing is written.
    """
    folder = Path(folder).expanduser().absolute()
    if folder.exists() and not folder.is_dir():
        return "is a file, not a folder"
    probe = nearest_existing(folder)
    if not probe.is_dir():
        return f"cannot be created: {probe} is a file, not a folder"
    if os.access(probe, os.W_OK | os.X_OK):
        return None
    where = "" if probe == folder else f"cannot be created: {probe} "
    if _read_only(probe):
        return f"{where}is on a read-only file system"
    return f"{where}is not writable by you"


def user_cache_path(kind: str, data: Path, name: str = "{digest}") -> Path:
    """Where state about the read-only folder ``data`` goes (its file index, an own folder's
    stamp): ``$XDG_CACHE_HOME/jepa_datamodules/<kind>/<name>`` (``~/.cache`` when unset), with
    ``{digest}`` in ``name`` replaced by 16 hex digits of ``data``'s real path, so two folders
    never share an entry and ``data`` itself is never written. The one answer to "the data
    folder is read-only: where does our bookkeeping go?"; nothing is created here."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    digest = hashlib.sha1(str(Path(data).expanduser().resolve()).encode()).hexdigest()[:16]
    return base / "jepa_datamodules" / kind / name.format(digest=digest)


def storage_error(exc: OSError, folder: Path, what: str, needed: int | None = None, fix: str = "") -> StorageError:
    """The one-sentence :class:`StorageError` for an ``OSError`` raised while writing ``what`` into ``folder``.

    ``needed``: bytes the whole step needs there (named when the disk filled up). ``fix``: the way
    out, as the end of a sentence [a generic "point data_dir at ..."].
    """
    folder = Path(folder)
    if exc.errno in _FULL_ERRNOS:
        free, _ = free_space(folder)
        amount = f"it needs {human_bytes(needed)} there, {human_bytes(free)} is free now" if needed else \
            f"{human_bytes(free)} is free there now"
        quota = " (or your disk quota was reached)" if exc.errno == errno.EDQUOT else ""
        return StorageError(
            f"The disk holding {folder} filled up{quota} while writing {what}: {amount}; nothing half-written "
            f"was kept: free space there or {DATA_DIR_HINT} a disk with room.", setting="data_dir", path=folder
        )
    reason = unwritable(folder)
    if reason is None:  # the folder itself is fine: the error was about one path inside it
        culprit = exc.filename or folder
        reason = f"holds {culprit}, which cannot be written ({exc.strerror or exc})"
    return StorageError(f"{folder} {reason}, so {what} cannot be written there; "
                        f"{fix or DATA_DIR_HINT + ' a folder you can write'}.", setting="data_dir", path=folder)


# ------------------------------------------------------------------------------ writing
def current_umask() -> int:
    """The process umask (read by setting it and putting it back; there is no getter)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def temp_name(path: Path) -> Path:
    """A hidden, unique sibling of ``path`` to write into before renaming: ``.<name>.<random>.tmp``."""
    return path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")


def atomic_write(path: Path, write: Callable[[IO[bytes]], None]) -> Path:
    """Create ``path`` complete or not at all, with the mode ``open`` gives (``0o666 & ~umask``).

    ``write`` gets a binary file handle; its bytes go to a hidden sibling (:func:`temp_name`),
    are flushed to disk and renamed over ``path``. On any failure the sibling is removed and the
    error (an ``OSError`` from the filesystem) propagates; ``path`` is then as it was.
    """
    path = Path(path)
    tmp = temp_name(path)
    try:
        with open(tmp, "xb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        raise
    return path


def atomic_write_text(path: Path, text: str) -> Path:
    """:func:`atomic_write` for UTF-8 text."""
    return atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))


def staging_folder(target: Path) -> Path:
    """Create and return a hidden sibling ``.<name>.partial-<random>`` of ``target`` to build it in.

    Made by plain ``mkdir``, so it (and later ``target``, once renamed) has ``0o777 & ~umask``.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    while True:
        candidate = target.parent / f".{target.name}.partial-{secrets.token_hex(4)}"
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            continue


def swap_in(built: Path, target: Path) -> None:
    """Put the complete folder ``built`` (from :func:`staging_folder`) at ``target``.

    A ``target`` already there (folder, file or link) is first renamed aside to a hidden
    ``.<name>.old-<random>`` and deleted once ``built`` is in place (a link is removed, never
    what it points to). A run killed between the two renames leaves ``target`` missing and its
    old copy aside: :func:`set_aside` finds it and :func:`clear_staging` puts it back.
    """
    target = Path(target)
    if not (target.exists() or target.is_symlink()):
        os.replace(built, target)
        return
    old = target.parent / f".{target.name}.old-{secrets.token_hex(4)}"
    os.replace(target, old)
    os.replace(built, target)
    remove_path(old)


def set_aside(target: Path) -> list[Path]:
    """Old copies of ``target`` that an interrupted :func:`swap_in` left aside (normally none), sorted."""
    return [path for path in _staging_of(Path(target)) if _STAGING.match(path.name).group("kind") == "old"]


def _staging_of(target: Path) -> list[Path]:
    """The staging entries beside ``target`` that belong to it (``.<name>.partial-*`` / ``.old-*``), sorted."""
    return sorted(Path(e.path) for e in _scandir(target.parent)
                  if (m := _STAGING.match(e.name)) and m.group("target") == target.name)


def honour_umask(folder: Path) -> None:
    """Give everything under ``folder`` (and ``folder``) the modes ``mkdir`` / ``open`` would."""
    mask = current_umask()
    os.chmod(folder, 0o777 & ~mask)
    for root, dirs, files in os.walk(folder):
        for name in dirs:
            os.chmod(os.path.join(root, name), 0o777 & ~mask)
        for name in files:
            path = os.path.join(root, name)
            if not os.path.islink(path):
                os.chmod(path, 0o666 & ~mask)


# ------------------------------------------------------------------------------ leftovers
def lock_path(target: Path) -> Path:
    """The lock file that guards ``target`` (see ``locks.dataset_lock``)."""
    return target.parent / f".{target.name}.lock"


def lock_held(lock: Path) -> bool:
    """True when some process holds ``lock`` right now (a lock file alone proves nothing)."""
    if fcntl is None:  # pragma: no cover - cannot tell: assume busy, never delete live work
        return True
    try:
        fd = os.open(lock, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)  # closing also drops the probe's own shared lock
    return False


def staging_entries(folder: Path, guard: Path | None = None, now: float | None = None) -> list[Path]:
    """Unfinished work left in ``folder`` by runs that are no longer running.

    ``.<x>.partial-*`` / ``.<x>.old-*`` entries count when no live process holds their lock:
    ``guard`` when given (the lock of the dataset ``folder`` belongs to, e.g. for ImageNet's
    ``train/.<wnid>.partial-*``), else ``.<x>.lock`` beside them. Temporary
    ``.*.tmp`` files count once older than :data:`TEMP_GRACE_S`. Nothing is written.
    """
    now = time.time() if now is None else now
    found = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    for entry in entries:
        staging = _STAGING.match(entry.name)
        if staging:
            lock = guard if guard is not None else Path(folder) / f".{staging.group('target')}.lock"
            if not lock_held(lock):
                found.append(Path(entry.path))
        elif _TEMP.match(entry.name):
            try:
                if now - entry.stat(follow_symlinks=False).st_mtime > TEMP_GRACE_S:
                    found.append(Path(entry.path))
            except OSError:
                continue
    return found


def remove_stale_staging(folder: Path) -> list[Path]:
    """Delete what killed runs left in and beside the dataset ``folder``; call it holding its lock.

    Inside ``folder`` every staging entry is stale (this process holds the lock that every writer
    of ``folder`` takes); beside it, ``folder``'s own staging is stale and so is other folders'
    whose lock no live process holds. An old copy whose original is missing (a :func:`swap_in`
    killed between its renames) is put back instead. Returns what was removed.
    """
    folder = Path(folder)
    beside = _staging_of(folder)
    others = [p for p in staging_entries(folder.parent) if p not in beside]
    return [path for path in beside + others if _clear(path)] + clear_staging(folder)


def clear_staging(folder: Path) -> list[Path]:
    """Delete the staging directly inside ``folder``: every ``.<x>.partial-*`` / ``.<x>.old-*``
    entry, and ``.*.tmp`` files older than :data:`TEMP_GRACE_S`. Call it holding the lock of the
    dataset ``folder`` is (part of): then no live process is writing them. An old copy whose
    original is missing is put back instead (see :func:`swap_in`). Returns what was removed."""
    staging = sorted(Path(e.path) for e in _scandir(folder) if _STAGING.match(e.name))
    staging += [p for p in staging_entries(folder) if _TEMP.match(p.name)]
    return [path for path in staging if _clear(path)]


def _clear(path: Path) -> bool:
    """Remove the leftover ``path``, or rename it back when it is an old copy whose original is
    missing; True when it was removed."""
    match = _STAGING.match(path.name)
    original = path.with_name(match.group("target")) if match else path
    if match and match.group("kind") == "old" and not (original.exists() or original.is_symlink()):
        os.rename(path, original)
        return False
    remove_path(path)
    return True


def _scandir(folder: Path) -> list[os.DirEntry]:
    try:
        return list(os.scandir(folder))
    except OSError:
        return []


def remove_path(path: Path) -> None:
    """Delete a file, link or folder tree; a link is removed, never what it points to."""
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
