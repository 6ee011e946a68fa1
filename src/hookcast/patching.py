"""PATCH bodies for any resource of the API: a JSON Patch array (RFC 6902: add, replace,
remove, test; paths case-insensitive in their first segment, leading slash optional) or a
JSON Merge Patch object (RFC 7396; field names case-insensitive, unknown ones ignored).
Also the If-Unmodified-Since check. Nothing here knows about HTTP requests."""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any

import json_merge_patch
import jsonpatch
import jsonpointer

from .errors import Conflict, NotFound, PreconditionFailed, ValidationError

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"


def apply_patch(
    document: dict[str, Any],
    body: Any,
    media_type: str,
    *,
    writable: Iterable[str],
    read_only: Iterable[str] = (),
    what: str = "resource",
) -> dict[str, Any]:
    """`document` (the writable fields of the resource) with the patch applied.

    `read_only` names fields that a JSON Patch may not touch (400) and a Merge Patch
    silently skips, like unknown fields. `what` names the resource in messages."""
    canonical = {name.lower(): name for name in writable}
    frozen = {name.lower(): name for name in read_only}
    if media_type == JSON_PATCH and not isinstance(body, list):
        raise ValidationError("A JSON Patch body must be an array of operations.")
    if media_type == MERGE_PATCH and not isinstance(body, dict):
        raise ValidationError("A JSON Merge Patch body must be an object.")
    if isinstance(body, list):
        ops = []
        for op in body:
            if not isinstance(op, dict):
                raise ValidationError("Every JSON Patch operation must be an object.")
            if op.get("op") not in ("add", "replace", "remove", "test"):
                raise ValidationError(
                    f"JSON Patch op {op.get('op')!r} is not supported; use add, replace, remove or test."
                )
            ops.append({**op, "path": _pointer(op.get("path"), canonical, frozen, what)})
        try:
            patched: dict[str, Any] = jsonpatch.apply_patch(document, ops)
            return patched
        except jsonpatch.JsonPatchTestFailed as exc:
            # jsonpatch names the Python types of both values; a client needs only the values.
            said = re.sub(r" \(<class '\w+'>\)", "", str(exc))
            raise Conflict(f"A JSON Patch test failed: {said}") from None
        except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException) as exc:
            raise ValidationError(f"The JSON Patch cannot be applied: {exc}") from None
    if isinstance(body, dict):
        patch = {
            canonical[key.lower()]: value for key, value in body.items() if key.lower() in canonical
        }
        merged: dict[str, Any] = json_merge_patch.merge(document, patch)
        return merged
    raise ValidationError("PATCH needs a JSON Patch array or a JSON Merge Patch object.")


def _pointer(path: Any, canonical: dict[str, str], frozen: dict[str, str], what: str) -> str:
    if not isinstance(path, str):
        raise ValidationError("Every JSON Patch operation needs a string 'path'.")
    path = path if path.startswith("/") else "/" + path
    head, _, rest = path[1:].partition("/")
    if head.lower() in frozen:
        raise ValidationError(f"{frozen[head.lower()]} is read-only and cannot be patched.")
    name = canonical.get(head.lower())
    if name is None:
        raise ValidationError(f"JSON Patch path {path!r} names no writable {what} field.")
    return "/" + name + ("/" + rest if "/" in path[1:] else "")


def check_unmodified(updated: datetime, if_unmodified_since: str | None, what: str) -> None:
    """412 when the resource changed after the If-Unmodified-Since date. `what` names it in
    the message, e.g. "Webhook 7"."""
    if not if_unmodified_since:
        return
    try:
        since = parsedate_to_datetime(if_unmodified_since)
    except (TypeError, ValueError):
        raise ValidationError(
            "If-Unmodified-Since is not an HTTP date (e.g. 'Wed, 21 Oct 2026 07:28:00 GMT')."
        ) from None
    # HTTP dates have whole seconds; a change within the same second counts as unchanged.
    if int(updated.timestamp()) > since.timestamp():
        raise PreconditionFailed(
            f"{what} was changed at {updated.isoformat()}, "
            "after the If-Unmodified-Since date; fetch it again and retry."
        )


def next_update_time(current_updated: datetime | None, read_updated: float, what: str) -> float:
    """Optimistic concurrency for a read-check-write update: the resource must still exist and
    be unchanged since it was read (checks such as verification ran in between). Returns the
    new `updated` time, always later than the old one so If-Unmodified-Since sees the change."""
    if current_updated is None:
        raise NotFound(f"There is no {what}.")
    if current_updated.timestamp() != read_updated:
        raise Conflict(
            f"{what[0].upper()}{what[1:]} was changed by someone else meanwhile; "
            "fetch it and retry."
        )
    return max(time.time(), read_updated + 1e-6)
