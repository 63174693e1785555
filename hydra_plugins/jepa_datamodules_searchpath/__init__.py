"""Hydra finds this plugin once jepa-datamodules is installed (Hydra imports every module of
the ``hydra_plugins`` namespace package) and appends the package's configs to every Hydra
app's search path. A defaults list of your own can then say ``- data: cifar10`` and
``- mask: multiblock`` with no ``hydra.searchpath`` line; your own config groups, earlier
in the search path, still win over ours."""

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin


class JEPADataModulesSearchPathPlugin(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        search_path.append(provider="jepa-datamodules", path="pkg://jepa_datamodules.conf")
