"""A threaded HTTP server on 127.0.0.1 (an OS-chosen port) for the test hubs; never any other address."""
from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def start_server(handler: type[BaseHTTPRequestHandler], name: str) -> ThreadingHTTPServer:
    """Serve `handler` on loopback from a daemon thread; the caller shuts it down."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True, name=name).start()
    return server
