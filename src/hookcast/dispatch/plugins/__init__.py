"""Delivery plugins (§9): `Type` names the plugin that carries a delivery out. `webhook`
posts over HTTPS (http.py); `crmscript` runs a stored script (crmscript.py); others come
from the entry point group `hookcast.plugins` (a factory taking Settings) and get the same
retry and state machinery. What they share is in base.py.

`load_plugins` lives here, above the three modules, because it builds both built-in
plugins: in base.py it would import the modules that import base.py.
"""

from __future__ import annotations

from importlib.metadata import entry_points

from ...net.sender import HttpSender
from ...settings import Settings
from ...store.database import Database
from .base import ENTRY_POINTS, STATE_EVENT, Plugin, payload_of, plugin_names
from .crmscript import CrmScriptPlugin, ScriptRunner
from .http import HttpPlugin

__all__ = [
    "STATE_EVENT",
    "CrmScriptPlugin",
    "HttpPlugin",
    "Plugin",
    "load_plugins",
    "payload_of",
    "plugin_names",
]


def load_plugins(
    settings: Settings, sender: HttpSender, db: Database, scripts: ScriptRunner | None = None
) -> dict[str, Plugin]:
    """`scripts`: the Hub's script runner (its sandbox pool), shared with the API."""
    plugins: dict[str, Plugin] = {"webhook": HttpPlugin(settings, sender)}
    plugins["crmscript"] = CrmScriptPlugin(settings, db, sender, scripts)
    for entry in entry_points(group=ENTRY_POINTS):
        plugins.setdefault(entry.name.lower(), entry.load()(settings))
    return plugins
