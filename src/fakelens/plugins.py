"""Plugins: modules that register methods or models (``@register_cam``, ``EXPLAINERS.register``,
``@register_model``) from outside fakelens, loaded by the command line and the service before they run.

A package declares them as entry points of the group ``fakelens.plugins``; for a one-off, name the modules in
``$FAKELENS_PLUGINS`` (comma-separated, importable from ``sys.path``, e.g. ``PYTHONPATH=. FAKELENS_PLUGINS=
my_cams fakelens methods``).
"""

from __future__ import annotations

import functools
import importlib
import os
from collections.abc import Callable
from importlib.metadata import entry_points

from fakelens.errors import ConfigError

GROUP = "fakelens.plugins"
ENV = "FAKELENS_PLUGINS"

_loaded: set[str] = set()


def load_plugins() -> list[str]:
    """Import every plugin once (entry points of :data:`GROUP`, then the modules in ``$FAKELENS_PLUGINS``);
    returns their names. A plugin that fails to import is a :class:`ConfigError` naming it."""
    found: list[tuple[str, str, Callable[[], object]]] = [
        (ep.value, f"the entry points of {GROUP}", ep.load) for ep in entry_points(group=GROUP)
    ]
    found += [
        (name, f"${ENV}", functools.partial(importlib.import_module, name))
        for name in (s.strip() for s in os.environ.get(ENV, "").split(","))
        if name
    ]
    for name, where, load in found:
        if name in _loaded:
            continue
        try:
            load()
        except Exception as exc:  # its own error, whatever it is, named with the plugin
            hint = ""
            if isinstance(exc, ModuleNotFoundError) and exc.name == name.partition(":")[0].split(".")[0]:
                hint = " (is its folder on PYTHONPATH? e.g. PYTHONPATH=. for ./my_plugin.py)"
            raise ConfigError(
                f"cannot load the fakelens plugin {name!r} named in {where}: {type(exc).__name__}: {exc}"
                f"{hint}"
            ) from exc
        _loaded.add(name)
    return [name for name, _, _ in found]
