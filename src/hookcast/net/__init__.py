"""hookcast's HTTP stack, behind a seam.

    transport.py    the seam: Transport (protocol), Request, Answer, TransportError
    mock.py         MockTransport(handler): a Transport for unit tests, no sockets
    http11.py       Http11Transport: the lean keep-alive HTTP/1.1 client deliveries use
    sender.py       HttpSender: one guarded, timed attempt -> AttemptOutcome
    script_http.py  CRMScript's HTTP class: the aiohttp client and the thread adapter

Only the seam is imported here, so `import hookcast.net` stays light (no aiohttp, no
httptools); import the implementations from their modules.
"""

from .mock import MockTransport
from .transport import Answer, Request, Transport, TransportError

__all__ = ["Answer", "MockTransport", "Request", "Transport", "TransportError"]
