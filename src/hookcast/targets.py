"""The well-formedness rule of a TargetUrl (§1, §7): a pure check with no network I/O.

It lives apart from `guard` (which needs aiohttp for its resolver hooks) so the domain
rules and the request shapes can use it without loading an HTTP stack."""

from __future__ import annotations

import yarl

from .errors import ValidationError

__all__ = ["MAX_URL_LENGTH", "check_target_url"]

MAX_URL_LENGTH = 2048


def check_target_url(url: str) -> None:
    """Raise ValidationError unless `url` is a well-formed TargetUrl for Type webhook."""
    if not isinstance(url, str) or not url:
        raise ValidationError("TargetUrl is required and must be an https:// URL")
    if len(url) > MAX_URL_LENGTH:
        raise ValidationError(
            f"TargetUrl is {len(url)} characters long; at most {MAX_URL_LENGTH} are allowed"
        )
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in url):
        raise ValidationError("TargetUrl must not contain whitespace or control characters")
    try:
        parsed = yarl.URL(url)
    except ValueError as exc:
        raise ValidationError(f"TargetUrl is not a valid URL: {exc}") from None
    if not parsed.scheme:
        raise ValidationError("TargetUrl must be an absolute https:// URL")
    if parsed.scheme != "https":
        raise ValidationError(f"TargetUrl must use https, not {parsed.scheme}")
    if not parsed.raw_host:
        raise ValidationError("TargetUrl must name a host (https://host/...)")
    if parsed.raw_user is not None or parsed.raw_password is not None:
        raise ValidationError("TargetUrl must not contain user:password credentials")
    if "#" in url:
        raise ValidationError("TargetUrl must not contain a fragment (#...)")
