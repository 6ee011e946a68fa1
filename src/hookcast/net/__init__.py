"""hookcast's HTTP stack, behind a seam.

    transport.py    the seam: Transport (protocol), Request, Answer, TransportError
    mock.py         MockTransport(handler): a Transport for unit tests, no sockets
    http11.py       Http11Transport: the lean keep-alive HTTP/1.1 client deliveries use
    resolver.py     CachingResolver: target names, DNS answers cached for their TTL
    sender.py       HttpSender: one guarded, timed attempt -> AttemptOutcome
    script_http.py  CRMScript's HTTP class: the aiohttp client the sandbox's requests go through

Only the seam is imported here: this package adds neither aiohttp nor httptools to an
import (`hookcast/__init__.py` itself still loads them until it turns lazy). Import the
implementations from their modules.
"""

from .mock import MockTransport
from .transport import Answer, Request, Transport, TransportError

__all__ = ["Answer", "MockTransport", "Request", "Transport", "TransportError"]
