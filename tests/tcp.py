"""A raw TCP server for tests that need what no HTTP or gRPC server sends: silence, a cut body.

`tcp_server(answer)` accepts connections on 127.0.0.1 in a thread and hands each to `answer`;
with `answer=None` every connection is held open and never written to (a hung or foreign process
on the port). Everything is closed when the block ends.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager


@contextmanager
def tcp_server(answer: Callable[[socket.socket], None] | None = None) -> Iterator[int]:
    """Serve on a free loopback port for the block; yields the port."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            if answer is None:
                held.append(conn)
                continue
            with conn:
                answer(conn)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(timeout=2)
        for conn in held:
            conn.close()
        listener.close()
