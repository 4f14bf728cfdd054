"""A small TCP proxy for fault injection (no tests here): relay, refuse, blackhole or delay a database connection.

Why a proxy rather than stopping the database: the server under test is shared by every test and engineer, and
the faults that matter (a source that accepts connections but never answers, a slow link) cannot be made by
stopping it. ``mode`` is switched while connections are open:

- ``pass``: relay both ways;
- ``refuse``: the listening port is closed (connects get ECONNREFUSED) and open connections are reset;
- ``blackhole``: connections are accepted and kept open, nothing is relayed either way (a hung server);
- ``delay``: every chunk is held ``delay_s`` seconds before it is relayed.
"""

from __future__ import annotations

import socket
import threading
import time

MODES = ("pass", "refuse", "blackhole", "delay")


class FaultProxy:
    """``FaultProxy(upstream_host, upstream_port)``; ``.port`` is the loopback port to connect to instead."""

    def __init__(self, host: str, port: int, delay_s: float = 0.5) -> None:
        self.upstream = (host, port)
        self.delay_s = delay_s
        self.mode = "pass"
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._listener: socket.socket | None = None
        self.port = self._listen(0)

    # ------------------------------------------------------------------------------------------------------------
    def _listen(self, port: int) -> int:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        s.listen(64)
        s.settimeout(0.2)
        self._listener = s
        threading.Thread(target=self._accept, args=(s,), daemon=True, name="faultproxy-accept").start()
        return s.getsockname()[1]

    def _accept(self, listener: socket.socket) -> None:
        while not self._stop.is_set() and self._listener is listener:
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._track(client)
            if self.mode == "blackhole":  # accepted, never answered
                continue
            try:
                upstream = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                self._close(client)
                continue
            self._track(upstream)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True, name="faultproxy-pump").start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        src.settimeout(0.2)
        while not self._stop.is_set():
            try:
                data = src.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                break
            if not data:
                break
            while self.mode == "blackhole" and not self._stop.is_set():  # hold everything: the link hangs
                time.sleep(0.05)
            if self.mode == "delay":
                time.sleep(self.delay_s)
            try:
                dst.sendall(data)
            except OSError:
                break
        self._close(src)
        self._close(dst)

    def _track(self, s: socket.socket) -> None:
        with self._lock:
            self._conns.add(s)

    def _close(self, s: socket.socket) -> None:
        with self._lock:
            self._conns.discard(s)
        try:
            s.close()
        except OSError:
            pass

    def _reset_all(self) -> None:
        with self._lock:
            conns, self._conns = list(self._conns), set()
        for s in conns:
            try:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # RST
                s.close()
            except OSError:
                pass

    # ------------------------------------------------------------------------------------------------------------
    def set(self, mode: str) -> None:
        """Switch the fault; leaving ``refuse`` listens again on the same port."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        if mode == self.mode:
            return
        if mode == "refuse":
            self.mode = mode
            listener, self._listener = self._listener, None
            if listener is not None:
                listener.close()
            self._reset_all()
            return
        if self.mode == "refuse":
            self._listen(self.port)
        elif self.mode == "blackhole":  # held data is stale protocol state: drop those connections
            self._reset_all()
        self.mode = mode

    def close(self) -> None:
        self._stop.set()
        if self._listener is not None:
            self._listener.close()
        self._reset_all()
