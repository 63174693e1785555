"""Unpack archives safely: every member vetted first, then one rename into place.

:func:`safe_extract` handles .tar (any compression) and .zip. It refuses, before writing
anything, a member with an absolute path, a ``..`` component, a path under a symlink, a link
leading outside the archive's root, or a device file / FIFO (:func:`tar_member_problem`, the
one vetting, which ImageNet's streamed unpacking applies too); extracts into a hidden sibling
folder; and renames it to the target only when complete. Files and folders get the modes the
umask gives, not the archive's.
"""

from __future__ import annotations

import glob
import logging
import re
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ..progress import mode as progress_mode
from ..progress import track
from ..errors import ExtractError
from .files import check_free_space, honour_umask, is_storage_error, remove_path, staging_folder, storage_error, swap_in

__all__ = ["name_problem", "safe_extract", "tar_member_problem"]

logger = logging.getLogger(__name__)

_TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")


def safe_extract(
    archive: Path,
    target: Path,
    *,
    progress: bool | None = None,
    members_filter: Callable[[str], bool] | None = None,
) -> Path:
    """Extract ``archive`` (.tar, .tar.gz/.tgz, .tar.bz2/.tar.xz, .zip) into the folder ``target``.

    Every member to be extracted is checked first; a member with an absolute path, a ``..``
    component, a path under a symlink, a symlink or hard link leading outside the archive's root,
    or a device file / FIFO makes the whole call fail before anything is written. Tar archives are
    additionally extracted with tarfile's ``'data'`` filter where Python has it (3.11.4+).

    Extraction happens in a hidden sibling folder ``.<target name>.partial-<random>`` that is renamed
    to ``target`` only when complete; an existing ``target`` is replaced only at that point. Leftover
    ``.partial-*`` folders from an interrupted earlier run are deleted first, so callers that may run
    concurrently must hold :func:`dataset_lock`.

    Args:
        archive: the archive file; the format is taken from the suffix, else sniffed from the content.
        target: folder to create (or replace) with the archive's contents.
        progress: members done, on stderr; default None = a bar on a terminal, plain lines otherwise
            (progress.py); False = silent.
        members_filter: called with each member's path inside the archive; members for which it
            returns False are not extracted (but are still checked: one unsafe member refuses the
            whole archive). Default None: extract everything.

    Returns:
        ``target``.

    Raises:
        ExtractError: unsafe member (named, with the reason), unreadable archive, or a failure
            while writing; ``target`` is then left as it was.
        StorageError: not enough free space, the disk filled up while extracting (nothing is
            kept), or the folder is read-only or not writable; ``target`` is left as it was.
    """
    archive, target = Path(archive), Path(target)
    if not archive.is_file():
        raise ExtractError(f"Archive {archive} does not exist; download it first or place it there by hand.", path=archive)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        _remove_leftovers(target)
    except OSError as exc:
        raise storage_error(exc, target.parent, f"the files extracted from {archive.name}") from exc
    show = progress_mode(progress)
    keep = members_filter or (lambda name: True)

    if _is_zip(archive):
        try:
            with zipfile.ZipFile(archive) as zf:
                everything = zf.infolist()
                for info in everything:
                    _refuse_unsafe_name(info.filename, archive)
                members = [info for info in everything if keep(info.filename)]
                needed = sum(info.file_size for info in members)
                check_free_space(target.parent, needed, f"extract {archive.name}")

                def extract_zip(folder: Path) -> None:
                    for info in track(members, f"extract {archive.name}", unit="files", progress=show):
                        zf.extract(info, folder)

                _extract_atomically(archive, target, extract_zip, needed)
        except zipfile.BadZipFile as exc:
            raise _unreadable(archive, exc) from exc
        return target

    try:
        tf = tarfile.open(archive, "r:*")
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise _unreadable(archive, exc) from exc
    with tf:
        try:
            # One pass over the headers so every member is vetted before the first byte is written.
            everything = tf.getmembers()
        except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
            raise _unreadable(archive, exc) from exc
        # All members, not just the selected ones: tarfile may pull an unselected hard-link target in.
        _refuse_unsafe_tar_members(everything, archive)
        members = [m for m in everything if keep(m.name)]
        needed = sum(m.size for m in members if m.isfile())
        check_free_space(target.parent, needed, f"extract {archive.name}")
        # tarfile's own 'data' filter as a second line of defence where this Python has it; the
        # modes stored in the archive are dropped so that files and folders get what the umask gives.
        extra: dict[str, Any] = {"filter": _umask_data_filter} if hasattr(tarfile, "data_filter") else {}

        def extract_tar(folder: Path) -> None:
            tf.extractall(folder, members=track(members, f"extract {archive.name}", unit="files", progress=show), **extra)
            if not extra:  # older Pythons: no filter hook, so set the modes afterwards
                honour_umask(folder)

        _extract_atomically(archive, target, extract_tar, needed)
    return target


def _umask_data_filter(member: tarfile.TarInfo, dest_path: str) -> tarfile.TarInfo:
    """tarfile's ``'data'`` filter, then no stored mode: extraction creates files and folders the
    way ``open`` and ``mkdir`` do, so they honour the umask (an archive's 0600 or 0644 would not)."""
    return tarfile.data_filter(member, dest_path).replace(mode=None, deep=False)


def _is_zip(archive: Path) -> bool:
    name = archive.name.lower()
    if name.endswith(".zip"):
        return True
    if name.endswith(_TAR_SUFFIXES):
        return False
    # Unknown suffix: sniff. Tar first, because a tar whose last member is a zip can look like one.
    return not tarfile.is_tarfile(archive) and zipfile.is_zipfile(archive)


def _unreadable(archive: Path, exc: BaseException) -> ExtractError:
    return ExtractError(
        f"{archive} is not a readable .tar, .tar.gz/.tgz or .zip archive ({exc}); "
        f"delete it and download it again.", path=archive
    )


def _refusal(archive: Path, member: str, reason: str) -> ExtractError:
    return ExtractError(
        f"Refusing to extract {archive.name}: member {member!r} {reason}. "
        f"The archive is damaged or malicious; nothing was extracted, download it again from a trusted source.",
        path=archive
    )


def _parts(name: str) -> list[str]:
    return [p for p in name.split("/") if p not in ("", ".")]


def name_problem(name: str) -> str | None:
    """Why writing an archive member called ``name`` could land outside the target, or None."""
    # Zip names may use backslashes (archives made on Windows); treat them as separators too.
    unified = name.replace("\\", "/")
    if unified.startswith("/") or re.match(r"[A-Za-z]:/", unified):
        return "has an absolute path"
    if ".." in _parts(unified):
        return "has a '..' component that would escape the target folder"
    return None


def tar_member_problem(member: tarfile.TarInfo, symlinks: set[tuple[str, ...]] = frozenset()) -> str | None:
    """Why extracting the tar ``member`` could be unsafe, or None: a bad name, a path under one of
    the archive's ``symlinks``, a device file or FIFO, a link leading out, an unknown type.

    The one vetting of archive members: :func:`safe_extract` applies it to every member before
    writing anything, and ImageNet's streamed unpacking (``formats/imagenet.py``) to each member
    it reads, with its own stricter rules on top."""
    problem = name_problem(member.name)
    if problem:
        return problem
    parts = _parts(member.name)
    for i in range(1, len(parts)):
        if tuple(parts[:i]) in symlinks:
            # Writing through a link (even one pointing inside) enables chained-link escapes.
            return f"lies under the symlink {'/'.join(parts[:i])!r}"
    if member.ischr() or member.isblk():
        return "is a device file"
    if member.isfifo():
        return "is a FIFO (named pipe)"
    if member.issym():
        problem = _link_problem(parts[:-1], member.linkname, symlinks)
        return f"is a symlink to {member.linkname!r}, which {problem}" if problem else None
    if member.islnk():
        problem = _link_problem([], member.linkname, symlinks)
        return f"is a hard link to {member.linkname!r}, which {problem}" if problem else None
    if not (member.isfile() or member.isdir()):
        return f"has an unsupported type ({member.type!r})"
    return None


def _refuse_unsafe_name(name: str, archive: Path) -> None:
    problem = name_problem(name)
    if problem:
        raise _refusal(archive, name, problem)


def _refuse_unsafe_tar_members(members: Iterable[tarfile.TarInfo], archive: Path) -> None:
    members = list(members)
    symlinks = {tuple(_parts(m.name)) for m in members if m.issym()}
    for member in members:
        problem = tar_member_problem(member, symlinks)
        if problem:
            raise _refusal(archive, member.name, problem)


def _link_problem(base: list[str], linkname: str, symlinks: set[tuple[str, ...]]) -> str | None:
    """Why a link at folder ``base`` with target ``linkname`` is unsafe, or None if it stays inside."""
    if linkname.startswith("/"):
        return "is an absolute path"
    current = list(base)
    steps = _parts(linkname)
    for i, step in enumerate(steps):
        if step == "..":
            if not current:
                return "points outside the target folder"
            current.pop()
            continue
        current.append(step)
        if i < len(steps) - 1 and tuple(current) in symlinks:
            return f"passes through the symlink {'/'.join(current)!r}"
    return None


def _extract_atomically(archive: Path, target: Path, extract: Callable[[Path], None], needed: int) -> None:
    try:
        partial = staging_folder(target)
    except OSError as exc:
        raise storage_error(exc, target.parent, f"the files extracted from {archive.name}", needed=needed) from exc
    try:
        extract(partial)
    except BaseException as exc:
        remove_path(partial)
        filter_error = getattr(tarfile, "FilterError", ())
        if isinstance(exc, filter_error):
            member = getattr(getattr(exc, "tarinfo", None), "name", "?")
            raise _refusal(archive, member, f"was rejected by tarfile's safety filter ({exc})") from exc
        if is_storage_error(exc):
            raise storage_error(exc, target.parent, f"the files extracted from {archive.name}", needed=needed) from exc
        if isinstance(exc, (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, OSError)):
            raise ExtractError(
                f"Extracting {archive.name} into {target} failed ({exc}); {target} was left as it was. "
                f"Check free space and permissions, or delete the archive and download it again if it is damaged.",
                path=archive
            ) from exc
        raise
    swap_in(partial, target)  # os.replace cannot overwrite a non-empty folder


def _remove_leftovers(target: Path) -> None:
    """Delete ``.<name>.partial-*`` / ``.<name>.old-*`` left by an extraction that was killed."""
    escaped = glob.escape(target.name)
    for pattern in (f".{escaped}.partial-*", f".{escaped}.old-*"):
        for leftover in target.parent.glob(pattern):
            logger.info("Removing %s left by an interrupted extraction.", leftover)
            remove_path(leftover)
