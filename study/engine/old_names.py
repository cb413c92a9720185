"""The engine's module names before issue 27.5 (`study.tune`, which shadowed `ray.tune`), for the
studies started before the rename: Ray pickled the searcher, the scheduler, the callbacks and the
trials' directory namer by module path into their experiment (tuner.pkl, searcher-state-*.pkl,
experiment_state-*.json), so resuming, exporting or replicating such a study unpickles names such
as `study.tune.recovery.ResumableOptunaSearch`. `install()` lets those names import as the modules
they became; no code uses them. study/engine/__init__.py installs it."""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
from types import ModuleType

OLD_PACKAGE = "study.tune"
NEW_PACKAGE = "study.engine"
# modules renamed inside the package as well (the rest kept their names)
RENAMED = {"export": "trial_tables"}


def new_name(old: str) -> str | None:
    """The module an old name now is (`study.tune.export` -> `study.engine.trial_tables`), else None."""
    if old == OLD_PACKAGE:
        return NEW_PACKAGE
    package, _, module = old.rpartition(".")
    if package != OLD_PACKAGE:
        return None
    return f"{NEW_PACKAGE}.{RENAMED.get(module, module)}"


class OldNames(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds an old name as the module it became: the very module object, so a pickled class is the
    class the code uses (isinstance holds), and its own name and spec unchanged."""

    def __init__(self) -> None:
        self._own_specs: dict[str, importlib.machinery.ModuleSpec | None] = {}

    def find_spec(self, fullname: str, path=None, target=None) -> importlib.machinery.ModuleSpec | None:
        if new_name(fullname) is None:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        new = new_name(spec.name)
        assert new is not None  # find_spec answered only for old names
        module = importlib.import_module(new)
        self._own_specs[spec.name] = module.__spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        # the import system has just set the module's __spec__ to the old name's: give it its own back
        assert module.__spec__ is not None
        module.__spec__ = self._own_specs.pop(module.__spec__.name)


def install() -> None:
    """Put the finder first on sys.meta_path (once): an old name never reaches another finder."""
    if not any(isinstance(finder, OldNames) for finder in sys.meta_path):
        sys.meta_path.insert(0, OldNames())
