"""An HTTP file server on 127.0.0.1 for the download tests: Range requests, ETags, and scripted faults."""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import re
import socket
import threading
from dataclasses import dataclass, field
from typing import Iterator


@dataclass
class Files:
    """What the server serves and how it misbehaves; ``requests`` records (path, Range header) of each GET."""

    files: dict[str, bytes] = field(default_factory=dict)
    cuts: dict[str, int] = field(default_factory=dict)        # path → how many more responses to cut half-way
    hold: dict[str, threading.Event] = field(default_factory=dict)  # path → send the second half once set
    misplaced: set[str] = field(default_factory=set)  # paths whose 206 answers start at byte 0, not where asked
    requests: list[tuple[str, str | None]] = field(default_factory=list)
    started: threading.Event = field(default_factory=threading.Event)  # set when a body starts going out


def _handler(state: Files):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # keep test output clean
            pass

        def do_GET(self) -> None:
            state.requests.append((self.path, self.headers.get("Range")))
            body = state.files.get(self.path)
            if body is None:
                self.send_error(404, "Not Found")
                return
            etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
            start = 0
            m = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
            if m and self.headers.get("If-Range", etag) == etag:
                start = 0 if self.path in state.misplaced else int(m.group(1))
                if start >= len(body):
                    self.send_error(416, "Range Not Satisfiable")
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            else:
                self.send_response(200)
            rest = body[start:]
            self.send_header("Content-Length", str(len(rest)))
            self.send_header("ETag", etag)
            self.send_header("Accept-Ranges", "bytes")
            self.end_headers()
            half = len(rest) // 2
            self.wfile.write(rest[:half])
            self.wfile.flush()
            state.started.set()
            if state.cuts.get(self.path, 0) > 0:
                state.cuts[self.path] -= 1
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            if self.path in state.hold:
                state.hold[self.path].wait(60)
            self.wfile.write(rest[half:])

    return Handler


@contextlib.contextmanager
def serve(state: Files) -> Iterator[str]:
    """Serve ``state`` on a free port of 127.0.0.1 in a thread; yields the base URL (``http://127.0.0.1:PORT``)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        for event in state.hold.values():
            event.set()
        server.shutdown()
        server.server_close()


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
