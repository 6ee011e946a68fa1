"""Moved to `hookcast.cli.crmscript`; this module keeps the old import path working."""

from .cli.crmscript import crmscript_app

__all__ = ["crmscript_app"]
