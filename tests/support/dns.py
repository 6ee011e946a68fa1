"""A real DNS server on loopback (UDP), for tests of the resolver: dnslib's DNSServer with
answers the test sets and changes, and a record of every query it was asked."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from dnslib import AAAA, CNAME, QTYPE, RCODE, RR, A, DNSRecord
from dnslib.server import DNSServer


@dataclass(frozen=True)
class Query:
    name: str  # lower-case, without the trailing dot
    qtype: str  # "A", "AAAA", ...
    at: float  # time.monotonic()


@dataclass
class Record:
    addresses: list[str] = field(default_factory=list)  # IPv4 and IPv6 addresses
    ttl: int = 60
    cname: str | None = None  # an alias: answered with a CNAME to this name first


class _Quiet:
    """dnslib's logger interface, silent (its default prints every packet)."""

    def __getattr__(self, _name: str) -> Any:
        return lambda *args, **kwargs: None


class DnsServer:
    """`records[name] = Record(...)`; any other name is NXDOMAIN. `delay` holds every answer
    back that long (so concurrent lookups overlap)."""

    def __init__(self) -> None:
        self.records: dict[str, Record] = {}
        self.delay = 0.0
        self._queries: list[Query] = []
        self._lock = threading.Lock()
        self._server = DNSServer(self, address="127.0.0.1", port=0, logger=_Quiet())
        self.port: int = self._server.server.server_address[1]

    def start(self) -> DnsServer:
        # A short poll interval: stop() waits for one (dnslib's start_thread uses 0.5 s).
        self._thread = threading.Thread(
            target=self._server.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.stop()
        self._server.server.server_close()
        self._thread.join(timeout=5)

    @property
    def nameserver(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    def queries(self, name: str | None = None, qtype: str | None = None) -> list[Query]:
        with self._lock:
            return [
                q
                for q in self._queries
                if (name is None or q.name == name) and (qtype is None or q.qtype == qtype)
            ]

    # dnslib's resolver interface (called on the server's threads)

    def resolve(self, request: DNSRecord, handler: Any) -> DNSRecord:
        name = str(request.q.qname).rstrip(".").lower()
        qtype = QTYPE[request.q.qtype]
        with self._lock:
            self._queries.append(Query(name, qtype, time.monotonic()))
            records = dict(self.records)
        if self.delay:
            time.sleep(self.delay)
        reply = request.reply()
        record = records.get(name)
        if record is None:
            reply.header.rcode = RCODE.NXDOMAIN
            return reply
        owner = name
        if record.cname is not None:
            reply.add_answer(RR(owner, QTYPE.CNAME, rdata=CNAME(record.cname), ttl=record.ttl))
            owner, target = record.cname, records.get(record.cname)
            if target is None:
                return reply
            record = target
        for address in record.addresses:
            if ":" in address and qtype == "AAAA":
                reply.add_answer(RR(owner, QTYPE.AAAA, rdata=AAAA(address), ttl=record.ttl))
            elif ":" not in address and qtype == "A":
                reply.add_answer(RR(owner, QTYPE.A, rdata=A(address), ttl=record.ttl))
        return reply
