"""A loopback HTTP proxy that answers 503 to the first N requests, then forwards, until broken."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx


class FlakyProxy:
    def __init__(
        self, upstream: str, failures: int, break_after: int | None = None, heal_after: int | None = None
    ) -> None:
        self.upstream = upstream
        self.failures_left = failures
        self.break_after = break_after  # forward this many requests, then set `broken`
        self.heal_after = heal_after  # once broken by break_after, fail this many requests, then heal
        self.paths: list[str] = []  # method and path of every forwarded request
        self.failed = 0
        self.forwarded = 0
        self.broken = False  # set to answer 503 to everything from now on
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                with proxy.lock:
                    fail = proxy.failures_left > 0 or proxy.broken
                    if fail:
                        proxy.failures_left = max(0, proxy.failures_left - 1)
                        proxy.failed += 1
                    elif proxy.break_after is not None and proxy.forwarded >= proxy.break_after:
                        proxy.break_after = None
                        proxy.failed += 1
                        fail = True
                        if proxy.heal_after is None:
                            proxy.broken = True
                        else:
                            proxy.failures_left = proxy.heal_after - 1
                    else:
                        proxy.forwarded += 1
                        proxy.paths.append(f"{self.command} {self.path}")
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if fail:
                    self.send_response(503)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                reply = httpx.request(
                    self.command, f"http://{proxy.upstream}{self.path}", content=body, headers=headers
                )
                self.send_response(reply.status_code)
                for key, value in reply.headers.items():
                    if key.lower() in ("content-length", "transfer-encoding", "connection"):
                        continue
                    if key.lower() == "location":
                        value = value.replace(proxy.upstream, proxy.address)
                    self.send_header(key, value)
                # A HEAD reply describes the body it does not send: keep the upstream length.
                length_header = reply.headers.get("content-length", "0") if self.command == "HEAD" else None
                self.send_header("Content-Length", length_header or str(len(reply.content)))
                self.end_headers()
                self.wfile.write(reply.content)

            do_GET = do_PUT = do_POST = do_HEAD = do_PATCH = do_DELETE = _handle

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FlakyProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
