"""The well-formedness rule of a TargetUrl (§1, §7): a pure check with no network I/O.

It lives apart from `guard` (which needs aiohttp for its resolver hooks) so the domain
rules and the request shapes can use it without loading an HTTP stack.

A host name must be one DNS can carry and IDNA allows (RFC 1035, RFC 5891): no empty
label (`a..b`), labels of at most 63 and a name of at most 253 characters in its ASCII
(A-label) form, and every label valid under IDNA 2008 (the `idna` package), e.g. no
malformed `xn--` label, no `%`, no leading or trailing hyphen. The one exception is `_`,
which IDNA refuses but real host names carry (intranet and some cloud names) and which
.NET's Uri, browsers and aiohttp accept."""

from __future__ import annotations

import idna
import yarl

from .errors import ValidationError

__all__ = ["MAX_HOST_LENGTH", "MAX_LABEL_LENGTH", "MAX_URL_LENGTH", "check_target_url"]

MAX_URL_LENGTH = 2048
MAX_LABEL_LENGTH = 63
MAX_HOST_LENGTH = 253


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
    _check_host(parsed.raw_host)
    if parsed.raw_user is not None or parsed.raw_password is not None:
        raise ValidationError("TargetUrl must not contain user:password credentials")
    if "#" in url:
        raise ValidationError("TargetUrl must not contain a fragment (#...)")


def _check_host(host: str) -> None:
    """`host` as yarl gives it: lower case, Unicode labels already in their A-label form."""
    if ":" in host:
        return  # an IPv6 literal, which yarl has parsed
    name = host.removesuffix(".")  # one trailing dot names the root: example.com.
    labels = name.split(".")
    if not all(labels):
        raise ValidationError(
            f"TargetUrl's host {host!r} has an empty label (two dots in a row, or a dot first)"
        )
    longest = max(labels, key=len)
    if len(longest) > MAX_LABEL_LENGTH:
        raise ValidationError(
            f"TargetUrl's host has a label of {len(longest)} characters ({longest[:20]}…); "
            f"at most {MAX_LABEL_LENGTH} are allowed"
        )
    if len(name) > MAX_HOST_LENGTH:
        raise ValidationError(
            f"TargetUrl's host name is {len(name)} characters long; "
            f"at most {MAX_HOST_LENGTH} are allowed"
        )
    try:
        idna.encode(name.replace("_", "x"))  # `_` allowed as a letter (see above)
    except idna.IDNAError as exc:
        raise ValidationError(
            f"TargetUrl's host {host!r} is not a valid domain name (IDNA): {exc}"
        ) from None
