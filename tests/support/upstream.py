"""Local upstreams that record exactly what reached them.

`RecordingHttpServer` is an HTTP/1.1 server (optionally TLS) that stores every
request it receives and answers with a scripted response. `RawTcpRecorder`
accepts TCP connections and stores every byte, answering nothing: it proves
that no request byte reached a server.
"""
from __future__ import annotations

import json
import socket
import ssl
import struct
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Optional

from .pki import Leaf


@dataclass
class ReceivedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self):
        return json.loads(self.body)


@dataclass
class ScriptedResponse:
    status: int = 200
    headers: dict[str, str] = field(default_factory=lambda: {"content-type": "application/json"})
    body: bytes = b'{"ok":true}'
    # Send the body in chunked transfer encoding, this many bytes per chunk
    # (each written and flushed on its own).
    chunk_size: Optional[int] = None
    # Announce the whole body, send this many bytes of it, then reset the
    # connection (TCP RST), as a crashing service does.
    reset_after: Optional[int] = None
    # Trailers after the body (HTTP/2 services only, tests/support/h2.py).
    trailers: Optional[dict[str, str]] = None


Responder = Callable[[ReceivedRequest], ScriptedResponse]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "RecordingHttpServer._Server"

    def _handle(self):
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            body = self._read_chunked()
        req = ReceivedRequest(self.command, self.path,
                              {k.lower(): v for k, v in self.headers.items()}, body)
        owner = self.server.owner
        with owner.lock:
            owner.requests.append(req)
        resp = owner.responder(req)
        self.send_response(resp.status)
        for k, v in resp.headers.items():
            self.send_header(k, v)
        if resp.chunk_size:
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()
            for i in range(0, len(resp.body), resp.chunk_size):
                piece = resp.body[i:i + resp.chunk_size]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            return
        self.send_header("content-length", str(len(resp.body)))
        self.end_headers()
        if resp.reset_after is not None:
            self.wfile.write(resp.body[:resp.reset_after])
            self.wfile.flush()
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            self.connection.close()
            return
        if self.command != "HEAD":
            self.wfile.write(resp.body)

    def _read_chunked(self) -> bytes:
        out = b""
        while True:
            size = int(self.rfile.readline().split(b";")[0], 16)
            if size == 0:
                self.rfile.readline()
                return out
            out += self.rfile.read(size)
            self.rfile.readline()

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _handle

    def log_message(self, *args):  # keep test output clean
        pass


class RecordingHttpServer:
    """An HTTP(S) upstream on 127.0.0.1 that records every request."""

    class _Server(ThreadingHTTPServer):
        daemon_threads = True
        owner: "RecordingHttpServer"

    def __init__(self, tls: Optional[Leaf] = None, responder: Optional[Responder] = None,
                 tls_max_version: Optional[ssl.TLSVersion] = None):
        self.requests: list[ReceivedRequest] = []
        self.lock = threading.Lock()
        self.responder: Responder = responder or (lambda req: ScriptedResponse())
        self._server = self._Server(("127.0.0.1", 0), _Handler)
        self._server.owner = self
        self.tls = tls is not None
        if tls is not None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(tls.cert, tls.key)
            if tls_max_version is not None:
                ctx.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
                ctx.maximum_version = tls_max_version
            self._server.socket = ctx.wrap_socket(self._server.socket, server_side=True)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> "RecordingHttpServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def respond_with(self, response: ScriptedResponse) -> None:
        self.responder = lambda req: response

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class RawTcpRecorder:
    """Accepts TCP connections on 127.0.0.1 and records every byte; never answers."""

    def __init__(self):
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.port = self._sock.getsockname()[1]
        self.connections = 0
        self.data = bytearray()
        self.lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def _accept(self):
        while not self._stopping.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            with self.lock:
                self.connections += 1
            threading.Thread(target=self._drain, args=(conn,), daemon=True).start()

    def _drain(self, conn: socket.socket):
        with conn:
            while True:
                try:
                    chunk = conn.recv(65536)
                except OSError:
                    return
                if not chunk:
                    return
                with self.lock:
                    self.data += chunk

    def start(self) -> "RawTcpRecorder":
        self._thread.start()
        return self

    def wait_for_connection(self, timeout: float = 5.0) -> int:
        """Connections accepted so far, once there is at least one (or the
        timeout passed). The accept loop is a thread of its own: a client can
        see Envoy's refusal before that thread has counted the connection
        Envoy opened, so a test polls instead of reading the count at once."""
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                n = self.connections
            if n >= 1 or time.monotonic() > deadline:
                return n
            time.sleep(0.02)

    def stop(self) -> None:
        self._stopping.set()
        self._sock.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
