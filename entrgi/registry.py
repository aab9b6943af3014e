"""One way to extend: a kind of extension (method families, schedules, judges, model families) is a
registry, a dict by name that ``@registry.register(name)`` adds classes to (model families add their
records, ``entrgi.models.loaders.register``). A registry of a package imports every
module of it on its first ``discover()``, so a new module registers itself with no other edit."""

from __future__ import annotations

import importlib
import pkgutil


class Registry(dict):
    def __init__(self, package: str | None = None):
        super().__init__()
        self.package, self._discovered = package, package is None

    def register(self, name: str):
        """A class decorator: the class, available under ``name``."""
        def add(cls):
            self[name] = cls
            return cls
        return add

    def discover(self) -> Registry:
        """This registry, after importing every module of its package (once)."""
        if not self._discovered:
            package = importlib.import_module(self.package)
            for module in pkgutil.iter_modules(package.__path__):
                importlib.import_module(f"{self.package}.{module.name}")
            self._discovered = True
        return self
