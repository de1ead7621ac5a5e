"""A tiny real HTTP sink on loopback that records what channels post to it (a generic JSON webhook)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Sink:
    """``json://127.0.0.1:PORT/notify`` receives here; ``messages`` are the JSON bodies, oldest first.

    ``fail_with`` makes it answer that HTTP status instead of 200 (a broken channel).
    """

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.raw: list[bytes] = []
        self.fail_with: int | None = None
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                sink.raw.append(body)
                if sink.fail_with:
                    self.send_response(sink.fail_with)
                    self.end_headers()
                    return
                try:
                    sink.messages.append(json.loads(body))
                except ValueError:
                    sink.messages.append({"unparsed": body.decode("utf-8", "replace")})
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """The Apprise URL of this sink."""
        return f"json://127.0.0.1:{self.port}/notify"

    def __enter__(self) -> "Sink":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
