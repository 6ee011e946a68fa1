"""Cross-process wake-ups on SQLite, the counterpart of PostgreSQL's LISTEN/NOTIFY.

A process that delivers (`hookcast serve`, `hookcast worker`, a delivering Hub) listens on
a Unix datagram socket in a directory named after the database file; a process that
commits new due deliveries (an application's `Hub(deliver=False)`, the CLI) sends one byte
to every socket there after the commit: the ids of the webhooks that got new deliveries
(or `*`: any). So a separate worker starts delivering within milliseconds instead of at its
next poll, and is not woken for a webhook it cannot take more of.

Only an optimisation: a ring that is lost (a full buffer, a crash, a directory we cannot
use) costs at most one poll interval, never a delivery, so nothing here ever raises.
The directory is private to the user ($XDG_RUNTIME_DIR, else a 0700 directory of ours in
the temporary directory); one that another user owns or can write to is not used.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import logging
import os
import socket
import stat
import tempfile
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path

__all__ = ["Doorbell"]

log = logging.getLogger("hookcast")
MAX_SOCKET_PATH = 107  # bytes in sockaddr_un.sun_path, less the terminating NUL
MAX_MESSAGE = 1024  # a ring naming more webhooks says "any" instead


def _base() -> Path:
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isdir(runtime):
        return Path(runtime) / "hookcast"
    return Path(tempfile.gettempdir()) / f"hookcast-{os.getuid()}"


def _private(path: Path, *, repair: bool = False) -> bool:
    """Ours alone: a directory (not a symlink) owned by us, no access for group or others.
    `repair`: take such access away from a directory we own."""
    try:
        info = os.lstat(path)
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
            return False
        if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            if not repair:
                return False
            os.chmod(path, 0o700)
    except OSError:
        return False
    return True


class Doorbell:
    def __init__(self, db_path: str) -> None:
        key = hashlib.sha256(os.path.realpath(db_path).encode()).hexdigest()[:16]
        self.directory = _base() / key
        self._sender: socket.socket | None = None  # used on the database thread only
        self._listener: socket.socket | None = None
        self._own: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def ring(self, webhook_ids: Iterable[int] | None = None) -> None:
        """Wake every listener but our own, for these webhooks (None: any). Never raises
        and never blocks."""
        message = b"*" if webhook_ids is None else ",".join(map(str, webhook_ids)).encode()
        if len(message) > MAX_MESSAGE:
            message = b"*"
        try:
            if not _private(self.directory.parent) or not _private(self.directory):
                return  # nobody listens, or not a directory we trust
            names = os.listdir(self.directory)
            if self._sender is None:
                self._sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                self._sender.setblocking(False)
        except OSError:
            return
        for name in names:
            path = str(self.directory / name)
            if path == self._own:
                continue
            try:
                self._sender.sendto(message, path)
            except OSError as exc:
                if exc.errno in (errno.ECONNREFUSED, errno.ENOTSOCK):  # its process is gone
                    with contextlib.suppress(OSError):
                        os.unlink(path)
                # EAGAIN: its buffer is full of unread rings, so it will wake anyway.

    def listen(self, on_ring: Callable[[set[int] | None], None]) -> bool:
        """Call `on_ring(webhook ids or None for any)` on the running loop whenever another
        process rings. False (and a warning) when that is not possible here: this process
        then relies on polling."""
        try:
            for directory in (self.directory.parent, self.directory):
                with contextlib.suppress(FileExistsError):
                    directory.mkdir(mode=0o700)
                if not _private(directory, repair=True):
                    raise PermissionError(f"{directory} is not a directory of this user")
            own = str(self.directory / f"{os.getpid()}-{uuid.uuid4().hex[:8]}")
            if len(os.fsencode(own)) > MAX_SOCKET_PATH:
                raise OSError(f"the socket path {own} is longer than {MAX_SOCKET_PATH} bytes")
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            try:
                sock.setblocking(False)
                sock.bind(own)
            except OSError:
                sock.close()
                raise
        except OSError as exc:
            log.warning(
                "no cross-process wake-ups on this SQLite database (%s); "
                "new deliveries from other processes wait for the next poll",
                exc,
            )
            return False
        self._own, self._listener = own, sock
        self._loop = asyncio.get_running_loop()

        def readable() -> None:
            webhooks: set[int] | None = set()
            with contextlib.suppress(BlockingIOError):
                while message := sock.recv(MAX_MESSAGE):  # one call for all rings queued
                    if webhooks is not None:
                        try:
                            webhooks.update(int(i) for i in message.split(b",") if i)
                        except ValueError:  # "*", or not ours to read: any
                            webhooks = None
            on_ring(webhooks)

        self._loop.add_reader(sock.fileno(), readable)
        return True

    def stop_listening(self) -> None:
        """Remove our socket (and the directory, when we were the last)."""
        if self._listener is not None:
            if self._loop is not None and not self._loop.is_closed():
                self._loop.remove_reader(self._listener.fileno())
            self._listener.close()
            self._listener = None
        if self._own is not None:
            with contextlib.suppress(OSError):
                os.unlink(self._own)
            with contextlib.suppress(OSError):
                self.directory.rmdir()  # fails while other listeners are in it
            self._own = None

    def close(self) -> None:
        """Stop listening and release the sender (once the database thread is done)."""
        self.stop_listening()
        if self._sender is not None:
            self._sender.close()
            self._sender = None
