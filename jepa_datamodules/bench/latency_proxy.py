"""A loopback S3 endpoint behind a proxy that adds a fixed latency per request and counts them.

``jepa-bench bench=sources`` reads LitData chunks "from object storage" through this: moto's
S3 server (``ThreadedMotoServer``, as the streaming tests use) on 127.0.0.1, and in front of
it a small HTTP server on 127.0.0.1 that sleeps ``latency_ms`` before forwarding each request
(a round trip to a real bucket costs tens of milliseconds; loopback costs none, which would
hide exactly what reading item by item costs) and counts requests, GETs and the response
bytes it relays. Clients are pointed at the proxy (``endpoint_url``); the bench uploads
through the S3 URL directly, so uploads are neither delayed nor counted.

Both run in a process of their own, so their CPU and memory stay out of the loader
processes' figures (the bench excludes this process by its pid)::

    python -m jepa_datamodules.bench.latency_proxy --latency-ms 20

prints one JSON line ``{"s3": <url>, "proxy": <url>}`` when ready and exits when its
standard input closes (so it never outlives the bench that started it). ``GET
<proxy>/__stats__`` answers the counts so far as JSON (not forwarded, not counted, no delay).
"""

from __future__ import annotations

import argparse
import http.client
import http.server
import json
import subprocess
import sys
import threading
import time
import urllib.request
from typing import Any

#: The path that answers the counts instead of being forwarded.
STATS_PATH = "/__stats__"
# Headers that belong to one connection, not to the request (RFC 9110 7.6.1).
_HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
               "transfer-encoding", "upgrade"}
_PIECE = 1 << 20  # bytes relayed per read


class _Counts:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests = 0
        self.by_method: dict[str, int] = {}
        self.bytes_out = 0

    def add(self, method: str, body_bytes: int) -> None:
        with self.lock:
            self.requests += 1
            self.by_method[method] = self.by_method.get(method, 0) + 1
            self.bytes_out += body_bytes

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {"requests": self.requests, "gets": self.by_method.get("GET", 0), "by_method": dict(self.by_method),
                    "bytes": self.bytes_out}


class _ProxyServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, upstream: tuple[str, int], latency_s: float) -> None:
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        self.upstream = upstream
        self.latency_s = latency_s
        self.counts = _Counts()


class _ProxyHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as S3 clients expect
    server: _ProxyServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - base signature
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        if self.path == STATS_PATH:
            body = json.dumps(self.server.counts.snapshot()).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        self._forward()

    def _request_body(self) -> bytes | None:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else None

    def _forward(self) -> None:
        body = self._request_body()
        time.sleep(self.server.latency_s)  # the round trip a real bucket would cost
        headers = {key: value for key, value in self.headers.items() if key.lower() not in _HOP_BY_HOP}
        if body is not None:
            headers["Content-Length"] = str(len(body))
        upstream = http.client.HTTPConnection(*self.server.upstream, timeout=60)
        try:
            upstream.request(self.command, self.path, body=body, headers=headers)
            response = upstream.getresponse()
            length = response.getheader("Content-Length")
            payload = None if length is not None or self.command == "HEAD" else response.read()
            self.send_response(response.status, response.reason)
            for key, value in response.getheaders():
                if key.lower() not in _HOP_BY_HOP and key.lower() != "content-length":
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(payload)) if payload is not None else (length or "0"))
            self.end_headers()
            sent = 0
            if payload is not None:
                self.wfile.write(payload)
                sent = len(payload)
            elif self.command != "HEAD":
                while piece := response.read(_PIECE):
                    self.wfile.write(piece)
                    sent += len(piece)
            self.server.counts.add(self.command, sent)
        finally:
            upstream.close()

    do_HEAD = do_PUT = do_POST = do_DELETE = _forward  # noqa: N815 - http.server naming


def serve(latency_ms: float) -> None:
    """Start moto and the proxy, print their URLs as one JSON line, serve until stdin closes."""
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's server logs a line per request otherwise
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    proxy = _ProxyServer((host, port), latency_ms / 1000)
    threading.Thread(target=proxy.serve_forever, name="latency-proxy", daemon=True).start()
    print(json.dumps({"s3": f"http://{host}:{port}", "proxy": f"http://127.0.0.1:{proxy.server_address[1]}"}),
          flush=True)
    sys.stdin.read()  # returns when the bench closes the pipe or ends
    proxy.shutdown()
    moto.stop()


class LatencyProxy:
    """The proxy process seen from the bench: ``with LatencyProxy(20) as proxy: proxy.stats()``.

    ``s3_url``: moto directly (for uploads); ``url``: through the proxy (for the readers
    being measured); ``pid``: the process to leave out of the loader figures.
    """

    def __init__(self, latency_ms: float = 20.0, start_timeout_s: float = 60.0):
        self.latency_ms = float(latency_ms)
        self.start_timeout_s = start_timeout_s
        self.process: subprocess.Popen | None = None
        self.url = self.s3_url = ""

    @property
    def pid(self) -> int:
        assert self.process is not None, "the proxy was not started"
        return self.process.pid

    def __enter__(self) -> "LatencyProxy":
        self.process = subprocess.Popen([sys.executable, "-m", __name__, "--latency-ms", str(self.latency_ms)],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        ready: list[str] = []
        reader = threading.Thread(target=lambda: ready.append(self.process.stdout.readline()), daemon=True)
        reader.start()
        reader.join(self.start_timeout_s)
        if not ready or not ready[0].strip():
            self.__exit__()
            raise RuntimeError(f"The loopback S3 endpoint (moto) and its latency proxy did not start within "
                               f"{self.start_timeout_s:.0f} s; the sources bench needs moto[server] installed "
                               "(pip install 'moto[server]').")
        urls = json.loads(ready[0])
        self.s3_url, self.url = urls["s3"], urls["proxy"]
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.process is None:
            return
        try:
            self.process.stdin.close()
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def stats(self) -> dict[str, Any]:
        """Requests, GETs and relayed bytes so far (the counts only grow)."""
        with urllib.request.urlopen(self.url + STATS_PATH, timeout=10) as response:
            return json.loads(response.read())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--latency-ms", type=float, default=20.0, help="delay added to every request (ms) [20]")
    serve(parser.parse_args(argv).latency_ms)


if __name__ == "__main__":
    main()
