"""ImageNet-1k from the official ILSVRC2012 downloads (or Hugging Face's parquet shards), and its subsets.

ImageNet cannot be downloaded without an image-net.org account, so preparation starts from
whatever the user has put in ``root`` and builds ``train/<wnid>/``, ``val/<wnid>/`` in place.
One concern per module:

* :mod:`.detect`: what ``root`` holds (:func:`detect_source`), a split unpacked one level too
  deep (:func:`check_nesting`), and the manual steps when nothing usable is there
  (:func:`manual_instructions`);
* :mod:`.devkit`: the devkit's classes and validation ground truth (:func:`parse_devkit`);
* :mod:`.unpack`: vetting and unpacking the tars and sorting the validation images, through
  ``storage``'s staging and the dataset's lock (:func:`prepare_imagenet`);
* :mod:`.datasets`: the Dataset classes (ImageNet-1k, ImageNet-100 and other class subsets) and
  the class lists (:func:`load_class_list`, the packaged CMC ImageNet-100 list).

Every name other modules import from ``jepa_datamodules.formats.imagenet`` is re-exported here;
``formats.dataset`` reaches the Dataset classes through :func:`dataset_type`.
"""

from __future__ import annotations

from ...errors import ImageNetSetupError
from .datasets import IMAGENET100_SHA256, IMAGENET_SOURCES, ImageNetDataset, ImageNetSubset, dataset_type, load_class_list
from .detect import DEVKIT, TRAIN_TAR, VAL_TAR, check_nesting, detect_source, manual_instructions
from .devkit import parse_devkit
from .unpack import prepare_imagenet, unpack_imagenet

__all__ = [
    "TRAIN_TAR",
    "VAL_TAR",
    "DEVKIT",
    "IMAGENET100_SHA256",
    "IMAGENET_SOURCES",
    "ImageNetSetupError",
    "ImageNetDataset",
    "ImageNetSubset",
    "check_nesting",
    "dataset_type",
    "detect_source",
    "prepare_imagenet",
    "unpack_imagenet",
    "parse_devkit",
    "manual_instructions",
    "load_class_list",
]
