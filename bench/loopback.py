"""Servers on loopback that fail the way a service does, for bench/faults.py and the tests (standard library only):
one that accepts every connection and never answers, and a proxy that can freeze."""
from __future__ import annotations

import contextlib
import select
import socket
import threading
import time

HOST = "127.0.0.1"


class HungServer:
    """Accepts every connection on loopback and never sends a byte: a cache or broker that hangs. ``accepted``
    counts the connections so far."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind((HOST, 0))
        self.sock.listen(1024)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True, name=type(self).__name__).start()

    def _accept(self) -> None:
        while True:
            try:
                conn = self.sock.accept()[0]
            except OSError:
                return
            self.accepted += 1
            self.held.append(conn)  # kept open, never read from or written to
            self.connected(conn)

    def connected(self, conn: socket.socket) -> None:
        """What to do with a new connection: nothing here."""

    def close(self) -> None:
        self.sock.close()
        for conn in self.held:
            with contextlib.suppress(OSError):
                conn.close()


class FreezableProxy(HungServer):
    """A TCP proxy on loopback to ``host:port`` that can freeze: while ``frozen`` is set it forwards nothing either
    way and keeps every connection open (new ones are accepted too), as a database stopped with SIGSTOP, or a network
    that drops everything, looks to its clients. What arrives meanwhile is delivered once thawed."""

    def __init__(self, host: str, port: int):
        self.target = (host, port)
        self.frozen = threading.Event()
        super().__init__()

    def connected(self, conn: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.target)
        except OSError:
            conn.close()
            return
        self.held.append(upstream)
        for src, dst in ((conn, upstream), (upstream, conn)):
            threading.Thread(target=self._pump, args=(src, dst), daemon=True, name="proxy-pump").start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError, ValueError):  # ValueError: the other side closed the socket
            while True:
                if not select.select([src], [], [], 0.05)[0]:
                    continue
                data = src.recv(65536)
                if not data:
                    break
                while self.frozen.is_set():
                    time.sleep(0.05)
                dst.sendall(data)
        for sock in (src, dst):
            with contextlib.suppress(OSError):
                sock.close()

    def close(self) -> None:
        self.frozen.clear()
        super().close()
