"""Cross-process wake-ups on SQLite, the counterpart of PostgreSQL's LISTEN/NOTIFY.

A process that delivers (`hookcast serve`, `hookcast worker`, a delivering Hub) listens on
a Unix datagram socket in a directory named after the database file; a process that
commits new due deliveries (an application's `Hub(deliver=False)`, the CLI) sends one byte
to every socket there after the commit. So a separate worker starts delivering within
microseconds instead of at its next poll.

Only an optimisation: a ring that is lost (another user's process, a full buffer, a
crash) costs at most one poll interval, never a delivery.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import os
import socket
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path

__all__ = ["Doorbell"]


class Doorbell:
    def __init__(self, db_path: str) -> None:
        key = hashlib.sha256(os.path.realpath(db_path).encode()).hexdigest()[:16]
        # Short on purpose: a socket path may hold at most 107 bytes.
        self.directory = Path(tempfile.gettempdir()) / f"hookcast-{os.getuid()}" / key
        self._sender: socket.socket | None = None
        self._listener: socket.socket | None = None
        self._own: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def ring(self) -> None:
        """Wake every listener but our own. Never raises and never blocks."""
        try:
            names = os.listdir(self.directory)
        except OSError:
            return  # nobody listens
        if self._sender is None:
            self._sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._sender.setblocking(False)
        for name in names:
            path = str(self.directory / name)
            if path == self._own:
                continue
            try:
                self._sender.sendto(b"!", path)
            except OSError as exc:
                if exc.errno in (errno.ECONNREFUSED, errno.ENOTSOCK):  # its process is gone
                    with contextlib.suppress(OSError):
                        os.unlink(path)
                # EAGAIN: its buffer is full of unread rings, so it will wake anyway.

    def listen(self, on_ring: Callable[[], None]) -> None:
        """Call `on_ring` on the running loop whenever another process rings."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._own = str(self.directory / f"{os.getpid()}-{uuid.uuid4().hex[:8]}")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.setblocking(False)
        sock.bind(self._own)
        self._listener = sock
        self._loop = asyncio.get_running_loop()

        def readable() -> None:
            with contextlib.suppress(BlockingIOError):
                while sock.recv(64):  # one wake-up for however many rings queued
                    pass
            on_ring()

        self._loop.add_reader(sock.fileno(), readable)

    def close(self) -> None:
        if self._listener is not None:
            if self._loop is not None and not self._loop.is_closed():
                self._loop.remove_reader(self._listener.fileno())
            self._listener.close()
            self._listener = None
        if self._own is not None:
            with contextlib.suppress(OSError):
                os.unlink(self._own)
            self._own = None
        if self._sender is not None:
            self._sender.close()
            self._sender = None
