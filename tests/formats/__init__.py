"""Tests of formats/: each on-disk format read back exactly as its writer wrote it (ImageNet's archives and devkit, STL-10, the parquet release, Imagenette, Tiny-ImageNet, your own folders)."""
