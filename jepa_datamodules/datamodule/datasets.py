"""One DataModule per dataset: each names its catalog spec and declares the dataset's own
arguments (CIFAR-100's label granularity, STL-10's split and fold, the ImageNet-100 class
list, ...), which it hands on to its format module as format options; everything else is
:class:`~jepa_datamodules.datamodule.base.JEPADataModule`'s."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .base import JEPADataModule


class SyntheticDataModule(JEPADataModule):
    """The embedded, offline dataset (see ``formats/synthetic.py``), generated once per setting.

    Extra args: ``num_train`` [4096], ``num_test`` [1024], ``resolution`` (native side,
    pixels) [32], ``num_classes`` [10]. Lives in ``<data_dir>/synthetic/<setting>``.
    """

    spec_name = "synthetic"

    def __init__(self, *args: Any, num_train: int = 4096, num_test: int = 1024, resolution: int = 32,
                 num_classes: int = 10, **kwargs: Any):
        """The generated dataset's size and look, then the arguments of ``JEPADataModule``.

        Args:
            num_train: images in the generated train split.
            num_test: images in the generated test split.
            resolution: native side of the generated images, pixels.
            num_classes: number of shape / texture classes (at most the ten that exist).
            *args: passed on to ``JEPADataModule``.
            **kwargs: passed on to ``JEPADataModule`` (``data_dir``, ``batch_size``, ``mask``, ...).
        """
        self.format_options = {"num_train": num_train, "num_test": num_test, "resolution": resolution,
                               "num_classes": num_classes}
        super().__init__(*args, **kwargs)


class CIFAR10DataModule(JEPADataModule):
    """CIFAR-10: 50,000 train / 10,000 test images, 32x32, 10 classes; auto-download."""

    spec_name = "cifar10"


class CIFAR100DataModule(JEPADataModule):
    """CIFAR-100: as CIFAR-10 with 100 fine classes; ``label_type="coarse"`` gives the 20 superclasses."""

    spec_name = "cifar100"

    def __init__(self, *args: Any, label_type: str = "fine", **kwargs: Any):
        """CIFAR-100's label granularity, then the arguments of ``JEPADataModule``.

        Args:
            label_type: ``"fine"`` (100 classes) or ``"coarse"`` (20 superclasses).
            *args: passed on to ``JEPADataModule``.
            **kwargs: passed on to ``JEPADataModule`` (``data_dir``, ``batch_size``, ``mask``, ...).
        """
        self.format_options = {"label_type": label_type}
        super().__init__(*args, **kwargs)


class STL10DataModule(JEPADataModule):
    """STL-10: 5,000 labeled train, 8,000 test, 100,000 unlabeled images, 96x96; auto-download.

    ``train_split`` [``"train+unlabeled"``]: the split pre-training reads (``train``,
    ``unlabeled`` or ``train+unlabeled``; unlabeled items carry label -1). ``fold``
    [None]: one of the 10 predefined folds of the labeled train split (0..9).
    The binaries are read one image at a time (``os.pread``), never loaded whole.
    """

    spec_name = "stl10"

    def __init__(self, *args: Any, train_split: str = "train+unlabeled", fold: int | None = None, **kwargs: Any):
        """STL-10's pre-training split and fold, then the arguments of ``JEPADataModule``.

        Args:
            train_split: the split pre-training reads: ``"train"``, ``"unlabeled"`` or
                ``"train+unlabeled"`` (unlabeled items carry label -1).
            fold: one of the 10 predefined folds (0..9) of the labeled train split; None reads it all.
            *args: passed on to ``JEPADataModule``.
            **kwargs: passed on to ``JEPADataModule`` (``data_dir``, ``batch_size``, ``mask``, ...).
        """
        self.format_options = {"train_split": train_split, "fold": fold}
        super().__init__(*args, **kwargs)


class ImagenetteDataModule(JEPADataModule):
    """Imagenette: fast.ai's 10-class ImageNet subset, 9,469 train / 3,925 val images; auto-download.

    Read as an ImageFolder (``train/<wnid>/``, ``val/<wnid>/``), labels in sorted wnid order.
    """

    spec_name = "imagenette"

    def __init__(self, *args: Any, variant: str = "320", **kwargs: Any):
        """Which Imagenette archive, then the arguments of ``JEPADataModule``.

        Args:
            variant: ``"320"`` (shorter side 320 px, 341 MB), ``"160"`` (160 px, 99 MB) or
                ``"full"`` (full-size images, 1.6 GB).
            *args: passed on to ``JEPADataModule``.
            **kwargs: passed on to ``JEPADataModule`` (``data_dir``, ``batch_size``, ``mask``, ...).
        """
        self.format_options = {"variant": str(variant)}
        super().__init__(*args, **kwargs)


class TinyImageNetDataModule(JEPADataModule):
    """Tiny-ImageNet-200: 100,000 train / 10,000 val / 10,000 unlabeled test images, 64x64, 200 classes; auto-download."""

    spec_name = "tinyimagenet"


class ImageNetDataModule(JEPADataModule):
    """ImageNet-1k (ILSVRC2012): 1,281,167 train / 50,000 val JPEGs, 1,000 classes.

    Cannot be downloaded automatically. ``prepare_data`` accepts, in this order: the
    ``train/<wnid>/`` + ``val/<wnid>/`` layout under ``<data_dir>/imagenet``; the three
    official files there (checked against their md5s, then unpacked into that layout,
    per-class tars in parallel and resumable); or an unpacked train layout plus the flat
    validation folder and the devkit. Otherwise it stops with the manual steps. Labels
    follow sorted wnid order (torchvision's ImageFolder convention). The file list is read
    once and cached next to the data (``.index-<split>.npz``), or, where the data folder
    cannot be written (a read-only mount), in ``$XDG_CACHE_HOME/jepa_datamodules/index``.

    The Hugging Face release (``source="parquet"``) is read in place: see ``__init__``.
    """

    spec_name = "imagenet"

    def __init__(self, *args: Any, source: str = "auto", **kwargs: Any):
        """Where the images come from, then the arguments of ``JEPADataModule``.

        Args:
            source: ``"parquet"`` reads the Hugging Face release
                (``<data_dir>/imagenet/data/{train,validation,test}-*.parquet``, see
                ``formats/hfparquet.py``) in place, with the same label ids (sorted-wnid order) and a
                ``test`` split of 100,000 unlabelled rows; ``"folders"`` the layout above;
                ``"auto"`` the shards when they are there and neither a ``train/`` folder nor
                the official train archive is ["auto"].
            *args: passed on to ``JEPADataModule``.
            **kwargs: passed on to ``JEPADataModule`` (``data_dir``, ``batch_size``, ``mask``, ...).
        """
        self.format_options = {**self.format_options, "source": source}  # + ImageNet-100's class_list
        super().__init__(*args, **kwargs)


class ImageNet100DataModule(ImageNetDataModule):
    """ImageNet-100: the 100-class subset of CMC (Tian et al.), read from a prepared ImageNet-1k.

    No image is copied or linked: the subset is an index (file list + labels 0..99 in
    sorted-wnid order) over ``<data_dir>/imagenet``, cached in ``<data_dir>/imagenet100``.
    An index needs no extra inodes, works where symlinks do not (object-store mounts,
    some Windows shares) and is what the loader reads anyway. ``class_list``: a file with
    one wnid per line to use another subset [None = the packaged CMC list, sha256-checked].
    Over the Hugging Face parquet shards (``source``, as for ImageNet-1k) the subset is the
    rows whose label is one of these classes' ids.
    """

    spec_name = "imagenet100"

    def __init__(self, *args: Any, class_list: str | Path | None = None, **kwargs: Any):
        """The class subset, then the arguments of ``JEPADataModule``.

        Args:
            class_list: a text file with one wnid per line; None uses the packaged CMC list
                (sha256-checked).
            *args: passed on to ``JEPADataModule``.
            **kwargs: passed on to ``JEPADataModule`` (``data_dir``, ``batch_size``, ``mask``, ...).
        """
        self.format_options = {"class_list": class_list}
        super().__init__(*args, **kwargs)


class ImageFolderDataModule(JEPADataModule):
    """Your own images: ``root/train/<class>/...`` (+ ``root/val/<class>/...``), or any folder.

    Images: .jpg .jpeg .png .webp .bmp in any case; hidden files and folders and other
    files are ignored; every image is converted to RGB; undecodable files are skipped
    (see ``formats/ownfolder.py``) and listed by ``jepa-verify data=imagefolder``. Nothing is
    downloaded; ``prepare_data`` writes only the file index (``.index-<split>.npz``) and
    the verification stamp, under ``data_dir`` (``imagefolder-state/``), or into a user cache
    folder when ``data_dir`` is read-only (``ownfolder.state_folder``); ``root`` is never written.
    """

    spec_name = "imagefolder"

    def __init__(self, *args: Any, root: str | Path | None = None, labels: str = "auto",
                 val_fraction: float | None = None, **kwargs: Any):
        """The folder and how to read it, then the arguments of ``JEPADataModule``.

        Args:
            root: the folder of images [None = ``<data_dir>/imagefolder``]. With a ``train/``
                sub-folder, that is the training split and ``val/`` (if present) the val split;
                otherwise every image under ``root`` is a training image.
            labels: ``"folders"`` (first folder level under the split = class, sorted names ->
                0..C-1, nested sub-folders allowed), ``"none"`` (every label -1, no probe) or
                ``"auto"`` (folders when every image of ``root/train`` is inside a class folder,
                or, without ``train/``, directly inside a first-level folder) ["auto"].
            val_fraction: [None = 0.01 (a seeded 1 % of train) when there is no ``val/``
                folder, 0 (the ``val/`` folder) when there is]; as for every dataset otherwise.
            *args: passed on to ``JEPADataModule``.
            **kwargs: passed on to ``JEPADataModule`` (``data_dir``, ``batch_size``, ``mask``, ...).
        """
        self.format_options = {"root": root, "labels": labels}
        super().__init__(*args, val_fraction=val_fraction, **kwargs)
