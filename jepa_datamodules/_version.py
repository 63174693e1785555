"""The installed version, read once from the package metadata (the one copy lives in pyproject.toml).

A module of its own, importing nothing from the package, so that any layer can name the version
(the verification stamp records it) without importing the package root.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("jepa-datamodules")
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"
