"""Registers what entrgi's ``conf/`` needs from the code whenever Hydra composes it, so the compose API
works as it does for any config directory:

    with hydra.initialize_config_dir(config_dir="/path/to/entrgi/conf", version_base="1.3"):
        cfg = hydra.compose(config_name="config", overrides=["method=aps"])

Hydra imports every module of ``hydra_plugins`` and asks each search-path plugin to amend the search
path before it loads a config; this one leaves the path as it is and registers the config store's
nodes and the resolvers (``entrgi.config_store.register``), only when the path holds entrgi's ``conf/``.
"""

from __future__ import annotations

from pathlib import Path

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"  # installed beside hydra_plugins/, as entrgi/ is


def is_entrgi_conf(path: str) -> bool:
    """Whether a search-path element (``file://DIR``, or a bare ``DIR`` as ``initialize_config_dir`` gives
    it) is entrgi's ``conf/``."""
    if path.startswith("file://"):
        path = path[len("file://"):]
    elif "://" in path:  # pkg://, structured://: not a directory
        return False
    return Path(path).resolve() == CONF_DIR


class EntrgiConfigRegistration(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        if any(is_entrgi_conf(element.path) for element in search_path.get_path()):
            from entrgi.config_store import register

            register()
