"""A fault-injecting HTTP file server on 127.0.0.1 for download tests.

``LoopbackServer(root)`` serves the files under ``root`` the way a plain static web server would
(GET, HEAD, ``Range: bytes=N-`` / ``bytes=N-M`` answered with 206 and ``Content-Range``), and lets a
test make it misbehave in the ways real servers and networks do. Every fault is registered for one
URL path (``"file.bin"`` or ``"/file.bin"``) or for every path (``path=None``), fires on the next
matching requests, and is used up after ``times`` firings (``times=None`` keeps it forever)::

    with LoopbackServer(tmp_path) as srv:
        srv.drop_after("big.bin", 700_000, times=3)    # cut the body short three times
        fetch([srv.url_for("big.bin")], dest)
        assert srv.count("big.bin") == 4

Faults, checked in this order for each request:

* ``fail(path, status)``: answer ``status`` (e.g. 500, 503, 404) with a short error page.
* ``stall(path, seconds)``: send the headers (and ``after_bytes`` of the body), then go silent for
  ``seconds`` before closing, so that a client with a shorter timeout gives up.
* ``drop_after(path, nbytes)``: send ``nbytes`` of the body, then close the connection although the
  ``Content-Length`` promised more (``reset=True`` sends a TCP reset instead of a clean close).
* ``corrupt(path)``: flip the bits of one byte in the middle of the body that is sent.
* ``ignore_range(path)``: (permanent) answer every request with 200 and the whole file, as servers
  without range support do.

The server keeps a log, ``.requests``, of ``Request(path, range_start, status, bytes_sent)`` tuples
(``range_start`` is None when the request had no Range header; ``bytes_sent`` counts file bytes
only, not headers or error pages), plus the shortcuts ``.count(path)`` and ``.bytes_served(path)``.
Reading the log waits until requests in progress have been logged, so a test that reads it right
after its client returned sees that client's last request.

The server only ever binds 127.0.0.1 on a free port chosen by the OS, never logs to stderr (tests
assert on stderr), and stops all of its threads when the ``with`` block ends. Pass ``tls=(certfile,
keyfile)`` to serve HTTPS instead.
"""

from __future__ import annotations

import http.server
import socket
import ssl
import struct
import sys
import threading
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, NamedTuple

__all__ = ["LoopbackServer", "Request"]

# Body bytes are written in pieces of this size so drops, stalls and the log are byte-exact
# without holding whole files in memory.
_WRITE_BLOCK = 64 * 1024
# How long a handler waits for a request line on an idle connection before it gives up; keeps
# shutdown from hanging on a client that connected and never spoke.
_IDLE_TIMEOUT_S = 5.0


class Request(NamedTuple):
    """One logged request: URL path, first byte asked for (None: no Range), status, file bytes sent."""

    path: str
    range_start: int | None
    status: int
    bytes_sent: int


@dataclass
class _Fault:
    kind: str  # "fail" | "stall" | "drop" | "corrupt"
    path: str | None  # None: every path
    remaining: int | None  # None: forever
    status: int = 0
    seconds: float = 0.0
    nbytes: int = 0
    reset: bool = False


def _norm(path: str | None) -> str | None:
    if path is None:
        return None
    return "/" + path.lstrip("/")


class LoopbackServer:
    """Threaded HTTP(S) server for the files under ``root``, on 127.0.0.1 only; a context manager.

    Args:
        root: folder whose files are served; URL ``/a/b.bin`` maps to ``root / "a/b.bin"``.
        tls: optional ``(certfile, keyfile)`` PEM paths; when given the server speaks HTTPS.
    """

    def __init__(self, root: Path, tls: tuple[Path, Path] | None = None) -> None:
        self.root = Path(root).resolve()
        self._tls = tls
        self._lock = threading.Condition()
        self._faults: list[_Fault] = []
        self._no_range: set[str | None] = set()
        self._log: list[tuple[int, Request]] = []  # (arrival number, request): logged on completion
        self._arrivals = 0
        self._active = 0
        self._closing = threading.Event()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None
        self.errors: list[BaseException] = []  # unexpected handler exceptions, for debugging

    # ----------------------------------------------------------------------------- lifecycle
    def __enter__(self) -> LoopbackServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def start(self) -> None:
        """Bind 127.0.0.1 on a free port and start serving in a background thread."""
        httpd = _Server(("127.0.0.1", 0), _Handler)
        httpd.owner = self
        if self._tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(str(self._tls[0]), str(self._tls[1]))
            # Handshake per connection in the handler thread, so a client that fails it (the
            # point of TLS tests) cannot block the accept loop.
            httpd.socket = context.wrap_socket(
                httpd.socket, server_side=True, do_handshake_on_connect=False
            )
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        """Stop accepting, wake stalled handlers and wait for every handler thread to finish."""
        if self._httpd is None:
            return
        self._closing.set()
        self._httpd.shutdown()
        self._httpd.server_close()  # joins handler threads (block_on_close)
        if self._thread is not None:
            self._thread.join()
        self._httpd = None

    @property
    def url(self) -> str:
        """Base URL without a trailing slash, e.g. ``http://127.0.0.1:40123``."""
        if self._httpd is None:
            raise RuntimeError("LoopbackServer is not running; use it in a `with` block.")
        scheme = "https" if self._tls else "http"
        return f"{scheme}://127.0.0.1:{self._httpd.server_address[1]}"

    def url_for(self, path: str) -> str:
        """Full URL of ``path`` (relative to ``root``) on this server."""
        return self.url + urllib.parse.quote(_norm(path) or "/")

    # ----------------------------------------------------------------------------- faults
    def fail(self, path: str | None, status: int = 500, times: int | None = 1) -> None:
        """Answer the next ``times`` requests for ``path`` with HTTP ``status`` (None: forever)."""
        self._add(_Fault("fail", _norm(path), times, status=status))

    def stall(
        self, path: str | None, seconds: float, times: int | None = 1, after_bytes: int = 0
    ) -> None:
        """Send headers and ``after_bytes`` of the body, then stay silent ``seconds`` and close."""
        self._add(_Fault("stall", _norm(path), times, seconds=seconds, nbytes=after_bytes))

    def drop_after(
        self, path: str | None, nbytes: int, times: int | None = 1, reset: bool = False
    ) -> None:
        """Send ``nbytes`` of the body, then close the connection early (``reset``: TCP RST)."""
        self._add(_Fault("drop", _norm(path), times, nbytes=nbytes, reset=reset))

    def corrupt(self, path: str | None, times: int | None = 1) -> None:
        """Flip one byte in the middle of the body of the next ``times`` responses."""
        self._add(_Fault("corrupt", _norm(path), times))

    def ignore_range(self, path: str | None) -> None:
        """From now on answer requests for ``path`` with 200 and the full file, ignoring Range."""
        with self._lock:
            self._no_range.add(_norm(path))

    def _add(self, fault: _Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def _take(self, kind: str, path: str) -> _Fault | None:
        """Return and use up one firing of the first live ``kind`` fault matching ``path``."""
        with self._lock:
            for fault in self._faults:
                if fault.kind != kind or fault.path not in (None, path):
                    continue
                if fault.remaining is not None:
                    if fault.remaining <= 0:
                        continue
                    fault.remaining -= 1
                return fault
        return None

    def _ignores_range(self, path: str) -> bool:
        with self._lock:
            return None in self._no_range or path in self._no_range

    # ----------------------------------------------------------------------------- log
    @property
    def requests(self) -> list[Request]:
        """Copy of the request log, oldest first (waits up to 5 s for requests in progress)."""
        with self._lock:
            self._lock.wait_for(lambda: self._active == 0, timeout=5.0)
            # Oldest by arrival: a handler logs when it is done, and under load the next request's
            # handler (the client moved on as soon as the answer came) can finish first.
            return [entry for _, entry in sorted(self._log, key=lambda item: item[0])]

    def count(self, path: str) -> int:
        """Number of logged requests (any method, any status) for ``path``."""
        key = _norm(path)
        return sum(1 for r in self.requests if r.path == key)

    def bytes_served(self, path: str) -> int:
        """Total file bytes sent for ``path`` over all logged requests."""
        key = _norm(path)
        return sum(r.bytes_sent for r in self.requests if r.path == key)

    def _begin(self) -> int:
        with self._lock:
            self._active += 1
            self._arrivals += 1
            return self._arrivals

    def _record(self, arrival: int, entry: Request) -> None:
        with self._lock:
            self._log.append((arrival, entry))
            self._active -= 1
            self._lock.notify_all()


class _Server(http.server.ThreadingHTTPServer):
    # Handler threads are joined on close, so a test never leaks a thread into the next one.
    daemon_threads = False
    block_on_close = True
    owner: LoopbackServer

    def handle_error(self, request: object, client_address: object) -> None:
        # The default prints a traceback to stderr; clients hanging up mid-body is routine here.
        exc = sys.exc_info()[1]
        if exc is not None and not isinstance(exc, (ConnectionError, TimeoutError, ssl.SSLError)):
            self.owner.errors.append(exc)


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server
    timeout = _IDLE_TIMEOUT_S
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        if isinstance(self.connection, ssl.SSLSocket):
            self.connection.do_handshake()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - base signature
        pass  # tests assert that downloads print nothing; the log lives in .requests instead

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        self._serve(with_body=True)

    def do_HEAD(self) -> None:  # noqa: N802
        self._serve(with_body=False)

    # ----------------------------------------------------------------------------- serving
    def _serve(self, with_body: bool) -> None:
        owner = self.server.owner
        path = _norm(urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)) or "/"
        range_start, range_end = _parse_range(self.headers.get("Range"))
        arrival = owner._begin()
        status, sent, linger = 0, 0, None
        try:
            status, sent, linger = self._respond(owner, path, range_start, range_end, with_body)
        finally:
            owner._record(arrival, Request(path, range_start, status, sent))
        if linger is not None:
            # A stall is logged before it starts, so reading the log never waits it out.
            linger()

    def _respond(
        self,
        owner: LoopbackServer,
        path: str,
        range_start: int | None,
        range_end: int | None,
        with_body: bool,
    ) -> tuple[int, int, Callable[[], None] | None]:
        """Send the response; return (status, file bytes sent, what to do after logging)."""
        fault = owner._take("fail", path)
        if fault is not None:
            self._error(fault.status)
            return fault.status, 0, None

        file = (owner.root / path.lstrip("/")).resolve()
        if not file.is_file() or not file.is_relative_to(owner.root):
            self._error(404)
            return 404, 0, None
        size = file.stat().st_size

        start, end, status = 0, size, 200
        if range_start is not None and not owner._ignores_range(path):
            if range_start >= size:
                self._error(416, {"Content-Range": f"bytes */{size}"})
                return 416, 0, None
            start, status = range_start, 206
            if range_end is not None:
                end = min(range_end + 1, size)

        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(end - start))
        self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{size}")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        if not with_body:
            return status, 0, None

        stall = owner._take("stall", path)
        drop = owner._take("drop", path) if stall is None else None
        corrupt = owner._take("corrupt", path)
        limit = end - start
        if stall is not None:
            limit = min(limit, stall.nbytes)
        if drop is not None:
            limit = min(limit, drop.nbytes)
        flip_at = start + (end - start) // 2 if corrupt is not None else -1

        sent = self._send_body(file, start, start + limit, flip_at)
        if stall is not None:

            def linger(seconds: float = stall.seconds) -> None:
                owner._closing.wait(seconds)  # interruptible, so close() never waits it out
                self._hang_up(reset=False)

            return status, sent, linger
        if drop is not None:
            self._hang_up(reset=drop.reset)
        return status, sent, None

    def _send_body(self, file: Path, start: int, stop: int, flip_at: int) -> int:
        sent = 0
        try:
            with open(file, "rb") as fh:
                fh.seek(start)
                pos = start
                while pos < stop:
                    block = bytearray(fh.read(min(_WRITE_BLOCK, stop - pos)))
                    if not block:
                        break
                    if pos <= flip_at < pos + len(block):
                        block[flip_at - pos] ^= 0xFF
                    self.wfile.write(block)
                    pos += len(block)
                    sent += len(block)
        except (ConnectionError, TimeoutError, ssl.SSLError):
            self.close_connection = True  # the client hung up; log what went out
        return sent

    def _hang_up(self, reset: bool) -> None:
        """Close the connection now, mid-body: a clean FIN, or a TCP RST when ``reset``."""
        self.close_connection = True
        try:
            if reset:
                self.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
            else:
                self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # the client may already be gone

    def _error(self, status: int, headers: dict[str, str] | None = None) -> None:
        body = f"{status} {http.server.BaseHTTPRequestHandler.responses.get(status, ('',))[0]}\n"
        data = body.encode()
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        if self.command != "HEAD":
            try:
                self.wfile.write(data)
            except (ConnectionError, ssl.SSLError):
                pass


def _parse_range(header: str | None) -> tuple[int | None, int | None]:
    """``bytes=N-`` / ``bytes=N-M`` → (N, M or None); anything else → (None, None), i.e. ignored."""
    if not header or not header.strip().startswith("bytes="):
        return None, None
    spec = header.strip()[len("bytes="):]
    if "," in spec:
        return None, None  # multi-range: serve the whole file, as many servers do
    first, _, last = spec.partition("-")
    try:
        start = int(first)
        end = int(last) if last.strip() else None
    except ValueError:
        return None, None
    return start, end
