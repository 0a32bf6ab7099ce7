"""A small TCP proxy on loopback in front of MariaDB, for the chaos run: every
worker's database URL points here, so the parent can take the database away.

``outage(seconds)`` closes the listener (new connections are refused) and cuts every
open connection in both directions (queries in flight see a lost connection, a commit
in flight may or may not have happened), waits, then listens again on the same port.
``slowdown(seconds, max_delay)`` delays every chunk forwarded, either way, by a random
0..max_delay for a while: each statement takes tens of milliseconds, the windows between
two steps of a worker widen, and the interleavings between workers change.
"""

from __future__ import annotations

import contextlib
import random
import socket
import threading
import time


class TcpProxy:
    def __init__(self, target_host: str = "127.0.0.1", target_port: int = 3306) -> None:
        self._target = (target_host, target_port)
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._connections: set[socket.socket] = set()
        self._stopped = False
        self.port = 0
        self.accepted = 0
        self.cut = 0
        self.outage_seconds = 0.0
        self.slow_seconds = 0.0
        self._max_delay = 0.0
        self._rng = random.Random(0)

    # -- lifecycle --------------------------------------------------------------------

    def start(self) -> TcpProxy:
        self._listen()
        return self

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
        self._close_listener()
        self._cut_all()

    def outage(self, seconds: float) -> int:
        """Refuse and cut every connection for ``seconds``; returns how many were cut."""
        started = time.monotonic()
        self._close_listener()
        cut = self._cut_all()
        time.sleep(seconds)
        with self._lock:
            if self._stopped:
                return cut
        self._listen()
        self.outage_seconds += time.monotonic() - started
        return cut

    def slowdown(self, seconds: float, max_delay: float) -> None:
        """Delay every forwarded chunk by up to ``max_delay`` seconds, for ``seconds``."""
        started = time.monotonic()
        self._max_delay = max_delay
        time.sleep(seconds)
        self._max_delay = 0.0
        self.slow_seconds += time.monotonic() - started

    @property
    def down(self) -> bool:
        with self._lock:
            return self._listener is None

    # -- internals ----------------------------------------------------------------------

    def _listen(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        for _ in range(50):  # the same port again: workers' URLs point at it
            try:
                listener.bind(("127.0.0.1", self.port))
                break
            except OSError:
                time.sleep(0.1)
        else:
            raise RuntimeError(f"the database proxy could not listen on port {self.port} again")
        listener.listen(128)
        self.port = listener.getsockname()[1]
        with self._lock:
            self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _close_listener(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()

    def _cut_all(self) -> int:
        with self._lock:
            connections, self._connections = self._connections, set()
        for connection in connections:
            _close(connection)
        self.cut += len(connections) // 2
        return len(connections) // 2

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # the listener was closed: an outage, or the end
            try:
                server = socket.create_connection(self._target, timeout=5)
            except OSError:
                _close(client)
                continue
            server.settimeout(None)
            for sock in (client, server):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                if self._listener is not listener:  # an outage began meanwhile
                    _close(client)
                    _close(server)
                    continue
                self._connections |= {client, server}
                self.accepted += 1
            threading.Thread(target=self._pump, args=(client, server), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                if self._max_delay:
                    with self._lock:
                        delay = self._rng.uniform(0.0, self._max_delay)
                    time.sleep(delay)
                sink.sendall(data)
        except OSError:
            pass
        finally:
            with self._lock:
                self._connections.discard(source)
                self._connections.discard(sink)
            _close(source)
            _close(sink)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()
