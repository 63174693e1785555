"""The catalog at a glance: what exists, what is on disk, what it will cost.

``jepa-datasets`` prints :func:`inventory_table`: one row per dataset of the catalog with
the facts of its spec (archive and extracted size, images per split, classes, native
resolution, default image / patch size) and its state under the data directory:

* ``absent``: nothing there;
* ``downloading``: an ``<archive>.part`` is present (with how much of it is there);
* ``downloaded`` (``generated`` for the synthetic set): archive or data present, but no
  valid verification stamp, so ``jepa-prepare`` / ``jepa-verify`` still has to check it;
* ``verified``: the stamp matches (``verify.stamp_matches``: ``stat`` only, nothing hashed).

Below it, totals for the usual plans (minimal, all auto-download, everything) against the
free space of the data directory's filesystem. Sizes are decimal (1 GB = 10**9 bytes), as
``storage/download.py``'s messages and disk tools print them.

``data=all-auto`` (``conf/data/all-auto.yaml``) makes ``jepa-prepare`` prepare every
auto-download dataset in turn through :class:`AllAutoDownload`; one failure does not stop
the others, and the run ends with a summary table and a non-zero exit naming what failed.

Every number comes from ``catalog.py``; :func:`markdown_table` renders the README's
datasets table from the same specs, and a test keeps the two equal.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import IO, Any, Collection, Iterable, Sequence

from ..catalog import SPECS, DatasetSpec, dataset_folder, dataset_names, get_spec, parquet_spec
from ..formats.ownfolder import STATE_NAME as OWN_FOLDER_STATE
from ..errors import ConfigError, DownloadError, JEPADataError, PrepareAllError
from ..storage.files import free_space, lock_path, staging_entries
from ..storage.files import human_bytes  # one formatter for every size the package prints
from ..storage.verify import read_stamp, stamp_matches
from .terms import console_text

# The smallest useful pair of real datasets: what the quick-start and the probe comparisons
# use (the synthetic set needs no disk worth planning for).
MINIMAL = ("cifar10", "cifar100")

STATES = ("absent", "downloading", "downloaded", "verified")

README_HEADER = ("name", "auto-download", "archive", "images", "classes", "native resolution",
                 "default image / patch")


# ------------------------------------------------------------------- spec facts as text
def source_label(spec: DatasetSpec) -> str:
    """``yes`` (auto-download), ``generated`` (synthetic), ``from <parent>`` or ``manual``."""
    if spec.reader == "synthetic":
        return "generated"
    if spec.auto_download:
        return "yes"
    return f"from {spec.parent}" if spec.parent else "manual"


def images_label(spec: DatasetSpec) -> str:
    """Images per split, e.g. ``50,000 train / 10,000 test``; unions (``train+unlabeled``) left out."""
    return " / ".join(f"{count:,} {split}" for split, count in spec.splits.items() if "+" not in split)


def resolution_label(spec: DatasetSpec) -> str:
    return str(spec.resolution) if spec.resolution else "varies"


def size_label(n_bytes: int) -> str:
    """Decimal units (``2.6 GB``); ``-`` for nothing."""
    return human_bytes(n_bytes) if n_bytes > 0 else "-"


def markdown_table(specs: Iterable[DatasetSpec] | None = None) -> str:
    """The README's datasets table, from the catalog's own specs (no ``$JEPA_CATALOG`` overrides)."""
    rows = [README_HEADER, tuple("---" for _ in README_HEADER)]
    for spec in specs if specs is not None else SPECS.values():
        said = spec.options.get("table", {})  # facts only the user's data knows (imagefolder)
        rows.append((spec.name, said.get("source", source_label(spec)), size_label(spec.archive_bytes),
                     said.get("images", images_label(spec)), said.get("classes", f"{spec.num_classes:,}"),
                     resolution_label(spec), f"{spec.image_size} / {spec.patch_size}"))
    return "\n".join("| " + " | ".join(row) + " |" for row in rows)


# --------------------------------------------------------------------- what is on disk
@dataclass(frozen=True)
class DiskState:
    """One dataset under a data directory.

    ``state`` is one of :data:`STATES`; ``used_bytes`` is what its folder occupies on disk
    (allocated blocks, hard links counted once); ``partial_bytes`` is what the ``.part``
    files hold so far; ``settings`` counts the generated settings of the synthetic set.
    """

    name: str
    folder: Path
    state: str
    used_bytes: int
    partial_bytes: int = 0
    settings: int = 0
    leftovers: tuple[Path, ...] = ()  # staging killed runs left behind; not part of used_bytes
    reclaimable_bytes: int = 0

    def label(self, spec: DatasetSpec) -> str:
        """What the table shows: ``downloading 42%``, ``generated``, ``verified (2 settings)``..."""
        if self.state == "downloading" and spec.archive_bytes:
            return f"downloading {100 * self.partial_bytes // spec.archive_bytes}%"
        text = "generated" if self.state == "downloaded" and spec.reader == "synthetic" else self.state
        if self.settings > 1:
            text += f" ({self.settings} settings)"
        return text


def disk_state(spec: DatasetSpec, data_dir: str | Path) -> DiskState:
    """Where ``spec``'s dataset stands under ``data_dir``; reads stamps and ``stat``s files, hashes nothing.

    Staging that killed runs left (``.partial-*`` folders and the like, see ``storage/files.py``) is
    listed in ``leftovers`` and counted in ``reclaimable_bytes``, not in ``used_bytes``."""
    folder = dataset_folder(data_dir, spec)
    found = leftovers(spec, folder)
    reclaim = sum(_path_usage(p) for p in found)
    used = max(0, disk_usage(folder) - sum(_path_usage(p) for p in found if folder in p.parents))
    extra = {"leftovers": tuple(found), "reclaimable_bytes": reclaim}
    if spec.reader == "synthetic":
        # One subfolder per generated setting (size, classes, seed), each with its own stamp.
        settings = [p for p in _visible_entries(folder) if p.is_dir()]
        verified = [p for p in settings if stamp_matches(p, _recorded_spec(spec, p))]
        state = "verified" if verified else ("downloaded" if settings else "absent")
        return DiskState(spec.name, folder, state, used, settings=len(settings), **extra)
    # ImageNet may be verified as the Hugging Face parquet shards instead of its folders.
    if stamp_matches(folder, spec) or ("parquet" in spec.options and stamp_matches(folder, parquet_spec(spec))):
        return DiskState(spec.name, folder, "verified", used, **extra)
    parts = [folder / f"{a.filename}.part" for a in spec.archives if (folder / f"{a.filename}.part").is_file()]
    if parts:
        return DiskState(spec.name, folder, "downloading", used, partial_bytes=sum(p.stat().st_size for p in parts),
                         **extra)
    state = "downloaded" if _visible_entries(folder) else "absent"
    return DiskState(spec.name, folder, state, used, **extra)


def leftovers(spec: DatasetSpec, folder: Path) -> list[Path]:
    """Staging of ``spec``'s dataset that no live process is working on (``storage.staging_entries``):
    in the dataset folder and its sub-folders, and the folder's own staging beside it."""
    if spec.reader == "synthetic":
        # One lock per generated setting, beside the setting's folder and its staging.
        found = staging_entries(folder)
        for setting in (p for p in _visible_entries(folder) if p.is_dir()):
            found += staging_entries(setting, guard=lock_path(setting))
    else:
        found = staging_entries(folder, guard=lock_path(folder))
        for sub in (p for p in _visible_entries(folder) if p.is_dir()):
            found += staging_entries(sub, guard=lock_path(folder))  # e.g. ImageNet's train/.<wnid>.partial
    found += [p for p in staging_entries(folder.parent) if p.name.startswith(f".{folder.name}.")]
    return found


def _path_usage(path: Path) -> int:
    """Bytes one file or folder tree occupies on disk (as :func:`disk_usage`, plus the entry itself)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return 0
    own = st.st_blocks * 512 if hasattr(st, "st_blocks") else st.st_size
    return own + (disk_usage(path) if path.is_dir() and not path.is_symlink() else 0)


def _recorded_spec(spec: DatasetSpec, folder: Path) -> DatasetSpec:
    """The synthetic spec with the split sizes and class count a setting's stamp recorded.

    Settings are chosen by the user, so the counts come from the stamp; the file list and
    everything else still come from the catalog, so a stamp from another layout fails.
    """
    stamp = read_stamp(folder) or {}
    try:
        facts = json.loads(stamp["spec"])
        return spec.replace(splits=dict(facts["splits"]), num_classes=int(facts["classes"]))
    except (KeyError, TypeError, ValueError):
        return spec


def _visible_entries(folder: Path) -> list[Path]:
    """Entries that are data: hidden ones (stamp, index caches, unfinished extractions) are not."""
    try:
        return [p for p in folder.iterdir() if not p.name.startswith(".")]
    except (FileNotFoundError, NotADirectoryError):
        return []


def disk_usage(path: Path) -> int:
    """Bytes ``path`` occupies on disk, like ``du``: allocated blocks, each inode once, links not followed.

    A dataset folder that is itself a symlink (data on another disk) is measured where it points.
    """
    seen: set[tuple[int, int]] = set()
    total = 0
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            try:
                st = os.lstat(os.path.join(root, name))
            except FileNotFoundError:  # deleted while walking (a finished .part renamed)
                continue
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            # st_blocks is in 512-byte units on every POSIX system; Windows has no st_blocks.
            total += st.st_blocks * 512 if hasattr(st, "st_blocks") else st.st_size
    return total


# ------------------------------------------------------------------------ the inventory
@dataclass(frozen=True)
class Plan:
    """A set of datasets and what it costs: archives, extracted data, on disk now, still needed."""

    title: str
    names: tuple[str, ...]
    archive_bytes: int
    extracted_bytes: int
    used_bytes: int
    needed_bytes: int


def plans(rows: Sequence[tuple[DatasetSpec, DiskState]]) -> list[Plan]:
    """Totals for minimal (CIFAR-10 + CIFAR-100), all auto-download, and everything.

    ``needed_bytes`` is what the datasets not yet downloaded will still take (archive, kept
    as ``keep_archives=True`` does, plus extracted data, less what their ``.part`` files hold),
    the figure ``prepare_data``'s free-space check uses.
    """
    by_name = {spec.name: (spec, state) for spec, state in rows}
    groups = [
        ("minimal (" + " + ".join(MINIMAL) + ")", tuple(n for n in MINIMAL if n in by_name)),
        ("all auto-download", tuple(n for n, (spec, _) in by_name.items() if spec.auto_download)),
        ("everything", tuple(by_name)),
    ]
    result = []
    for title, names in groups:
        members = [by_name[n] for n in names]
        needed = sum(spec.archive_bytes + spec.extracted_bytes - state.partial_bytes
                     for spec, state in members if state.state in ("absent", "downloading"))
        result.append(Plan(title, names, sum(s.archive_bytes for s, _ in members),
                           sum(s.extracted_bytes for s, _ in members), sum(d.used_bytes for _, d in members),
                           max(0, needed)))
    return result


def inventory(data_dir: str | Path) -> list[tuple[DatasetSpec, DiskState]]:
    """Every dataset of the catalog (``$JEPA_CATALOG`` overrides applied) with its state under ``data_dir``."""
    rows = []
    for name in dataset_names():
        spec = get_spec(name)
        rows.append((spec, disk_state(spec, data_dir)))
    return rows


def inventory_table(data_dir: str | Path) -> str:
    """The text ``jepa-datasets`` prints for ``data_dir``."""
    data_dir = Path(data_dir).expanduser()
    rows = inventory(data_dir)
    free, measured = free_space(data_dir)
    lines = [f"datasets under {data_dir.absolute()} ({human_bytes(free)} free on its filesystem)", ""]
    table = [("name", "auto-download", "archive", "extracted", "images", "classes", "native",
              "image / patch", "state", "on disk")]
    for spec, state in rows:
        table.append((spec.name, source_label(spec), size_label(spec.archive_bytes), size_label(spec.extracted_bytes),
                      images_label(spec), f"{spec.num_classes:,}", resolution_label(spec),
                      f"{spec.image_size} / {spec.patch_size}", state.label(spec), size_label(state.used_bytes)))
    lines += _text_table(table, right={2, 3, 5, 6, 9})
    lines.append("")
    totals = [("totals", "archives", "extracted", "on disk", "still needed", "fits in free space")]
    for plan in plans(rows):
        short = plan.needed_bytes - free
        fits = "yes" if short <= 0 else f"no, {human_bytes(short)} short"
        totals.append((plan.title, size_label(plan.archive_bytes), size_label(plan.extracted_bytes),
                       size_label(plan.used_bytes), size_label(plan.needed_bytes), fits))
    lines += _text_table(totals, right={1, 2, 3, 4})
    # A dataset folder may be a symlink to another disk: its free space is not the data dir's.
    device = os.stat(measured).st_dev
    for spec, state in rows:
        other_free, other = free_space(state.folder)
        if os.stat(other).st_dev != device:
            lines.append(f"note: {spec.name} lives on another filesystem ({other.resolve()}: {human_bytes(other_free)} free)")
    for spec, state in rows:
        if state.leftovers:
            count = len(state.leftovers)
            lines.append(f"reclaimable: {human_bytes(state.reclaimable_bytes)} in {count} unfinished staging "
                         f"entr{'y' if count == 1 else 'ies'} of {spec.name} left by killed runs "
                         f"({', '.join(str(p) for p in state.leftovers[:3])}{' ...' if count > 3 else ''}); "
                         f"the next `jepa-prepare data={spec.name}` removes them, or delete them by hand.")
    lines += package_state_lines(data_dir)
    auto = [spec.name for spec, _ in rows if spec.auto_download]
    lines += ["", f"jepa-prepare data=<name> prepares one dataset; data=all-auto prepares {', '.join(auto)} in turn.",
              "jepa-verify data=<name> checks a downloaded one. Sizes are decimal (1 GB = 10^9 bytes)."]
    return "\n".join(lines)


# What the package keeps under data_dir besides the datasets: (folder name, what it holds, who rebuilds it).
PACKAGE_STATE = (
    ("bench-standins", "jepa-bench's stand-in datasets (bench/standins.py)", "jepa-bench makes one again when it needs it"),
    (OWN_FOLDER_STATE, "the file indexes and stamps of your own image folders (formats/ownfolder.py)",
     "the next run on a folder lists and checks it again"),
)


def package_state_lines(data_dir: Path) -> list[str]:
    """One line per folder of :data:`PACKAGE_STATE` present under ``data_dir``: its size and how to free it."""
    lines = []
    for name, what, rebuilt_by in PACKAGE_STATE:
        folder = data_dir / name
        if folder.is_dir() and not folder.is_symlink():
            count = len(_visible_entries(folder))
            lines.append(f"also: {human_bytes(disk_usage(folder))} in {folder.absolute()}, {what}, {count} "
                         f"entr{'y' if count == 1 else 'ies'}; `rm -rf {folder.absolute()}` frees it ({rebuilt_by}).")
    return lines


def print_inventory(cfg: Any, file: IO[str] | None = None) -> None:
    """``jepa-datasets``: print :func:`inventory_table` for ``cfg.paths.data_dir``."""
    print(inventory_table(cfg.paths.data_dir), file=file or sys.stdout)


def _text_table(rows: Sequence[Sequence[str]], right: Collection[int] = ()) -> list[str]:
    """Rows as aligned text columns under a dashed rule; columns in ``right`` right-aligned."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]

    def render(row: Sequence[str]) -> str:
        cells = [cell.rjust(w) if i in right else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths))]
        return "  ".join(cells).rstrip()

    return [render(rows[0]), "  ".join("-" * w for w in widths)] + [render(row) for row in rows[1:]]


# ------------------------------------------------------------------------ data=all-auto
@dataclass(frozen=True)
class BundleSpec:
    """The ``spec`` of a bundle of datasets: its config name and its members, in order."""

    name: str
    title: str
    members: tuple[str, ...]


@dataclass(frozen=True)
class PrepareResult:
    name: str
    ok: bool
    seconds: float
    used_bytes: int
    error: str = ""


class AllAutoDownload:
    """Every auto-download dataset of the catalog, prepared one after the other (``data=all-auto``).

    Each dataset is built from its own ``conf/data/<name>.yaml`` (so its own defaults apply)
    with the keys below shared, then its ``prepare_data()`` runs: download with one progress
    bar per archive (when stderr is a terminal, or ``progress=True``), extract, verify. A
    failure is recorded and the next dataset goes on; at the end a summary table is printed
    and, if any failed, :class:`PrepareAllError` names them (``jepa-prepare`` exits non-zero).
    A dataset verified earlier is only ``stat``-checked, so re-running retries just the failures.

    Prepare-only: it has no splits or loaders; train with one dataset (``data=cifar10``).

    Args (defaults in brackets):
        data_dir: root of all datasets ["data"]. mirrors: base URLs tried before upstream for
            every archive [() = each dataset's own ``mirrors``]. download [True].
        force: fetch and extract again even if verified [False]. keep_archives [True].
        retries / timeout: per URL, seconds [4 / 30.0]. progress: bars [None = when a TTY].
        seed: seeds the verification's decode sample [0].
    """

    prepare_only = True  # the apps refuse it for anything but jepa-prepare

    def __init__(self, data_dir: str | Path = "data", mirrors: Sequence[str] = (), download: bool = True,
                 force: bool = False, keep_archives: bool = True, retries: int = 4, timeout: float = 30.0,
                 progress: bool | None = None, seed: int = 0):
        self.data_dir = Path(data_dir).expanduser()
        self.shared: dict[str, Any] = {"data_dir": str(self.data_dir), "download": download, "force": force,
                                       "keep_archives": keep_archives, "retries": retries, "timeout": timeout,
                                       "progress": progress, "seed": seed}
        if isinstance(mirrors, str):
            mirrors = [mirrors]
        if mirrors:
            self.shared["mirrors"] = list(mirrors)
        members = tuple(name for name in dataset_names() if get_spec(name).auto_download)
        self.spec = BundleSpec("all-auto", "every auto-download dataset", members)
        self.results: list[PrepareResult] = []

    @property
    def folder(self) -> Path:
        return self.data_dir

    def build(self, name: str) -> Any:
        """The DataModule ``conf/data/<name>.yaml`` describes, with the shared keys applied."""
        from hydra.utils import instantiate
        from omegaconf import OmegaConf

        config = resources.files("jepa_datamodules.conf").joinpath("data", f"{name}.yaml")
        if not config.is_file():
            raise ConfigError(f"Dataset '{name}' has no config conf/data/{name}.yaml; every catalog dataset needs one.")
        with config.open() as handle:
            data = OmegaConf.load(handle)
        # Its Hydra defaults list names the shared base (conf/data/_base_.yaml): merge it here too.
        for base in data.pop("defaults", []):
            if base != "_self_":
                with resources.files("jepa_datamodules.conf").joinpath("data", f"{base}.yaml").open() as handle:
                    data = OmegaConf.merge(OmegaConf.load(handle), data)
        # The YAMLs interpolate ${paths.data_dir}, ${seed} and ${mask}; give them a root to
        # resolve against instead of re-entering Hydra, which may already be running this app.
        root = OmegaConf.create({"paths": {"data_dir": self.shared["data_dir"]}, "seed": self.shared["seed"],
                                 "mask": None})
        root.data = data
        return instantiate(root.data, **self.shared, mask=None, num_workers=0)

    def prepare_data(self) -> None:
        """Prepare each member in turn, print the summary, raise :class:`PrepareAllError` if any failed."""
        self.results = []
        bugs: list[BaseException] = []  # not a JEPADataError: reported with its traceback once the rest are done
        count = len(self.spec.members)
        for index, name in enumerate(self.spec.members, 1):
            spec = get_spec(name)
            print(f"[{index}/{count}] {name}: {size_label(spec.archive_bytes)} archive, "
                  f"{size_label(spec.extracted_bytes)} extracted", flush=True)
            start = time.perf_counter()
            try:
                self.build(name).prepare_data()
            except Exception as error:  # noqa: BLE001 - one dataset's failure, whatever it is, must not stop the rest
                if isinstance(error, JEPADataError):
                    message = console_text(error)
                else:
                    bugs.append(error)
                    message = f"{type(error).__name__}: {error} (its traceback follows the summary)"
                self.results.append(PrepareResult(name, False, time.perf_counter() - start,
                                                  disk_usage(dataset_folder(self.data_dir, spec)), message))
                print(f"[{index}/{count}] {name}: FAILED (reason below the summary)", flush=True)
            else:
                self.results.append(PrepareResult(name, True, time.perf_counter() - start,
                                                  disk_usage(dataset_folder(self.data_dir, spec))))
        print()
        print(self.summary())
        failed = [r.name for r in self.results if not r.ok]
        if bugs:
            raise bugs[0]  # its own traceback and a non-zero exit, not one sentence
        if failed:
            raise PrepareAllError(
                f"{len(failed)} of {count} datasets failed: {', '.join(failed)} (reasons above); the others are "
                f"ready under {self.data_dir}. Fix the cause and re-run `jepa-prepare data=all-auto`: "
                f"verified datasets are only stat-checked, not fetched again.")

    def summary(self) -> str:
        """The table printed at the end of :meth:`prepare_data`, then each failure's reason in full."""
        rows = [("dataset", "result", "time", "on disk")]
        for r in self.results:
            rows.append((r.name, "ready" if r.ok else "FAILED", f"{r.seconds:.1f} s", size_label(r.used_bytes)))
        lines = _text_table(rows, right={2, 3})
        failures = [f"{r.name} failed: {r.error}" for r in self.results if not r.ok]
        lines += [""] + failures if failures else []
        return "\n".join(lines)

    # jepa-fit / jepa-verify / jepa-bench need one dataset; say so instead of an AttributeError.
    def _prepare_only(self, *args: Any, **kwargs: Any) -> Any:
        raise ConfigError(f"data={self.spec.name} only works with jepa-prepare; pick one dataset for this command, "
                         f"one of {{{', '.join(dataset_names())}}} (e.g. data=cifar10).")

    setup = verify = train_dataloader = val_dataloader = test_dataloader = describe = _prepare_only
