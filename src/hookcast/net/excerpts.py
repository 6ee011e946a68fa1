"""What an HTTP attempt sent and what came back, as the attempt log keeps it for people.

Both are bounded: the head (request or status line and headers) to `HEAD_CHARS`, the body to
its first `BODY_BYTES`; a cut says how much there was. The webhook's own Headers values may
be credentials of the receiver's, so the request shows their names only; the signatures are
shown (they prove nothing without the Secret), the Secret never is (it is in no header).
Built on the hot path, once per attempt: slices and one join, no copy of a whole big body.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit

from .transport import Answer

__all__ = ["BODY_BYTES", "HEAD_CHARS", "HIDDEN", "request_excerpt", "response_excerpt"]

BODY_BYTES = 4096
HEAD_CHARS = 8192
HIDDEN = "(hidden)"


def _cut(head: str) -> str:
    if len(head) <= HEAD_CHARS:
        return head
    return head[:HEAD_CHARS] + f"\r\n[headers cut: {len(head)} characters in all]"


def _body(body: bytes) -> str:
    if len(body) <= BODY_BYTES:
        return body.decode("utf-8", "replace")
    return body[:BODY_BYTES].decode("utf-8", "replace") + f"\n[body cut: {len(body)} bytes in all]"


def request_excerpt(
    url: str, headers: Mapping[str, str], body: bytes, hidden: Iterable[str] = ()
) -> str:
    """The request line, the headers (values of `hidden` names replaced) and the body start."""
    if hidden:
        masked = set(hidden)
        fields = [f"{k}: {HIDDEN if k in masked else v}" for k, v in headers.items()]
    else:
        fields = list(map(": ".join, headers.items()))
    head = "\r\n".join((_request_line(url), *fields, f"Content-Length: {len(body)}"))
    return _cut(head) + "\r\n\r\n" + _body(body)


@functools.lru_cache(maxsize=4096)
def _request_line(url: str) -> str:
    """The request line and Host of a TargetUrl (a webhook's is the same every time)."""
    parts = urlsplit(url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return f"POST {target} HTTP/1.1\r\nHost: {parts.netloc}"


def response_excerpt(answer: Answer) -> str:
    """The status line, the headers and the first `BODY_BYTES` of the answer's body."""
    status = f"HTTP/{answer.version} {answer.status} {answer.reason}".rstrip()
    head = "\r\n".join((status, *map(": ".join, answer.headers)))
    body = _body(answer.body)
    if answer.truncated and len(answer.body) <= BODY_BYTES:
        body += "\n[body cut by the answer size limit]"
    return _cut(head) + "\r\n\r\n" + body
