"""The public surface of `import hookcast` (in the manner of httpx's test of the same name):
the exported names are pinned, all of them resolve to hookcast's own objects, nothing else
public is left in the package namespace, and importing it stays light."""

from __future__ import annotations

import inspect
import subprocess
import sys
from types import ModuleType

import pytest

import hookcast

EXPORTED = [
    "AttemptOutcome",
    "Conflict",
    "ErrorKind",
    "HookcastError",
    "Hub",
    "IdempotencyKeyReused",
    "NotFound",
    "OutboxError",
    "PayloadTooLarge",
    "PreconditionFailed",
    "Settings",
    "Signal",
    "Signalled",
    "State",
    "TargetRefused",
    "Unauthorized",
    "ValidationError",
    "VerificationFailed",
    "Webhook",
    "__version__",
    "standard_webhooks_secret",
    "verify_signature",
]


def test_all_is_sorted_and_pinned() -> None:
    assert hookcast.__all__ == sorted(hookcast.__all__)
    assert hookcast.__all__ == EXPORTED


def test_every_exported_name_resolves() -> None:
    for name in hookcast.__all__:
        assert getattr(hookcast, name) is not None, name
    assert isinstance(hookcast.__version__, str)


def test_exported_members_are_hookcast_own() -> None:
    for name in hookcast.__all__:
        member = getattr(hookcast, name)
        if inspect.isclass(member) or inspect.isfunction(member):
            assert member.__module__.startswith("hookcast"), (name, member.__module__)


def test_nothing_public_is_left_unexported() -> None:
    for name in hookcast.__all__:  # load the lazy ones, so they are in the namespace too
        getattr(hookcast, name)
    public = {
        name
        for name, value in vars(hookcast).items()
        if not name.startswith("_") and not isinstance(value, ModuleType)
    }
    assert public <= set(hookcast.__all__), public - set(hookcast.__all__)
    assert set(hookcast.__all__) <= set(dir(hookcast))


def test_unknown_names_raise_attribute_error() -> None:
    with pytest.raises(AttributeError, match="NoSuchThing"):
        getattr(hookcast, "NoSuchThing")  # noqa: B009


def _loaded_after(statement: str, modules: tuple[str, ...]) -> list[str]:
    """The `modules` that a fresh interpreter has loaded after running `statement`."""
    code = f"import sys\n{statement}\nprint(' '.join(m for m in {modules!r} if m in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    return out.stdout.split()


def test_import_hookcast_is_light() -> None:
    assert _loaded_after("import hookcast", ("fastapi", "sqlalchemy", "aiohttp")) == []


def test_lazy_names_load_on_first_use() -> None:
    loaded = _loaded_after("import hookcast\nhookcast.Settings", ("pydantic", "fastapi"))
    assert loaded == ["pydantic"]


def test_domain_types_load_no_pydantic_and_no_http_stack() -> None:
    assert _loaded_after("import hookcast.model", ("pydantic", "aiohttp", "fastapi")) == []


def test_request_shapes_load_no_web_framework() -> None:
    loaded = _loaded_after(
        "import hookcast.api.schemas", ("fastapi", "starlette", "sqlalchemy", "aiohttp")
    )
    assert loaded == []
