"""An HTTP proxy, in the test process, between one service and another.

It forwards every request unchanged. Armed, it lets the next matching request
through to the upstream, waits for the upstream's whole answer (so the upstream
has done and committed its work), runs a hook (typically: SIGKILL the caller, or
the upstream), and then drops the connection instead of relaying the answer.
That is the moment a crash is most expensive: one side has done the work, the
other never learns it. The services run unchanged; only their URLs point here.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

#: Headers that describe one hop, not the message (RFC 9110 §7.6.1), plus the ones
#: httpx has already undone (it decodes the body and knows its length).
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te",
                        "trailer", "upgrade", "content-length", "content-encoding"})

Match = Callable[[str, str, bytes], bool]  # (method, path, body) → intercept?


@dataclass
class Intercepted:
    """What the upstream answered to the request the interposer never relayed."""

    method: str
    path: str
    body: bytes
    status: int
    answer: bytes


class Interposer:
    def __init__(self, upstream: str, name: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.name = name
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._http = httpx.Client(timeout=60)
        self._lock = threading.Lock()
        self._armed: tuple[Match, Callable[[], None]] | None = None
        self.fired = threading.Event()
        self.intercepted: Intercepted | None = None
        self._thread = threading.Thread(target=self._server.serve_forever, name=f"interposer-{name}",
                                        daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> Interposer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._http.close()

    def arm(self, match: Match, then: Callable[[], None]) -> None:
        """Intercept the next request ``match`` accepts: forward it, wait for the answer,
        call ``then``, drop the connection. One shot; re-arm for another."""
        with self._lock:
            self.fired.clear()
            self.intercepted = None
            self._armed = (match, then)

    def disarm(self) -> None:
        with self._lock:
            self._armed = None

    def _take(self, method: str, path: str, body: bytes) -> Callable[[], None] | None:
        with self._lock:
            if self._armed is None or not self._armed[0](method, path, body):
                return None
            then = self._armed[1]
            self._armed = None
            return then

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        interposer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as the services' clients expect

            def log_message(self, format: str, *args: object) -> None:
                pass  # the services log their side

            def _body(self) -> bytes:
                if self.headers.get("transfer-encoding", "").lower() == "chunked":
                    chunks = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                        if size == 0:
                            self.rfile.readline()
                            return b"".join(chunks)
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                return self.rfile.read(int(self.headers.get("content-length") or 0))

            def _forward(self) -> None:
                body = self._body()
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in HOP_BY_HOP and k.lower() != "host"}
                then = interposer._take(self.command, self.path, body)
                try:
                    resp = interposer._http.request(self.command, interposer.upstream + self.path,
                                                    content=body, headers=headers)
                except httpx.HTTPError as exc:
                    self._answer(502, f"{interposer.name} unreachable: {exc}".encode(), {})
                    return
                if then is not None:
                    interposer.intercepted = Intercepted(self.command, self.path, body,
                                                         resp.status_code, resp.content)
                    try:
                        then()
                    finally:
                        interposer.fired.set()
                        self.close_connection = True
                    return  # the answer is never relayed
                self._answer(resp.status_code, resp.content, resp.headers)

            def _answer(self, status: int, content: bytes, headers: httpx.Headers | dict[str, str]) -> None:
                self.send_response(status)
                for k, v in headers.items():
                    if k.lower() not in HOP_BY_HOP and k.lower() not in ("date", "server"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _forward

        return Handler
