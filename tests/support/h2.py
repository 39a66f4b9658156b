"""HTTP/2 over TLS (ALPN h2) for the end-to-end tests, on the `h2` package.

`H2Client` opens one connection and multiplexes streams on it: each
stream's headers, body chunks (each its own DATA frame) and trailers are
sent as given, and every stream's response (or reset) is collected.

`H2Upstream` is a TLS server that offers only ALPN `h2` and records every
request like `RecordingHttpServer` (tests/support/upstream.py), answering
with the same `ScriptedResponse`s; `reset_after` sends that many body bytes
and then resets the stream (RST_STREAM), as a failing service would.
"""
from __future__ import annotations

import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions

from .pki import Leaf
from .upstream import ReceivedRequest, Responder, ScriptedResponse


@dataclass
class H2Response:
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    trailers: dict[str, str] = field(default_factory=dict)
    ended: bool = False
    reset: Optional[int] = None  # RST_STREAM error code, if the stream was reset

    def json(self):
        import json
        return json.loads(self.body)


def _text(pairs) -> dict[str, str]:
    return {(k.decode() if isinstance(k, bytes) else k).lower(): (v.decode() if isinstance(v, bytes) else v)
            for k, v in pairs}


class H2Client:
    """One TLS connection with ALPN h2 to 127.0.0.1:port."""

    def __init__(self, port: int, ca: Path, host: str = "localhost", timeout: float = 15.0):
        ctx = ssl.create_default_context(cafile=str(ca))
        ctx.set_alpn_protocols(["h2"])
        raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock = ctx.wrap_socket(raw, server_hostname=host)
        if self.sock.selected_alpn_protocol() != "h2":
            raise RuntimeError(f"ALPN chose {self.sock.selected_alpn_protocol()!r}, not h2")
        self.host = host
        self.timeout = timeout
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.conn.initiate_connection()
        self.responses: dict[int, H2Response] = {}
        self._flush()

    def _flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def start(self, method: str, path: str, headers: Optional[dict[str, str]] = None,
              end_stream: bool = False) -> int:
        """Sends the headers of a new stream; returns its id."""
        sid = self.conn.get_next_available_stream_id()
        pairs = [(":method", method), (":path", path), (":scheme", "https"), (":authority", self.host)]
        pairs += [(k.lower(), v) for k, v in (headers or {}).items()]
        self.conn.send_headers(sid, pairs, end_stream=end_stream)
        self.responses[sid] = H2Response()
        self._flush()
        return sid

    def data(self, sid: int, chunk: bytes, end_stream: bool = False) -> None:
        """One DATA frame (waits for flow-control window when needed)."""
        while self.conn.local_flow_control_window(sid) < len(chunk):
            self._read_some()
        self.conn.send_data(sid, chunk, end_stream=end_stream)
        self._flush()

    def finish(self, sid: int, trailers: Optional[dict[str, str]] = None) -> None:
        if trailers:
            self.conn.send_headers(sid, list(trailers.items()), end_stream=True)
        else:
            self.conn.end_stream(sid)
        self._flush()

    def request(self, method: str, path: str, headers: Optional[dict[str, str]] = None,
                body: Optional[bytes] = None, chunks: Optional[Sequence[bytes]] = None,
                trailers: Optional[dict[str, str]] = None) -> int:
        """Starts a whole request without waiting for its response."""
        parts = list(chunks) if chunks is not None else ([body] if body else [])
        sid = self.start(method, path, headers, end_stream=not parts and not trailers)
        for i, part in enumerate(parts):
            self.data(sid, part, end_stream=(i == len(parts) - 1 and not trailers))
        if trailers:
            self.finish(sid, trailers)
        return sid

    def _read_some(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("connection closed by the server")
        for event in self.conn.receive_data(data):
            sid = getattr(event, "stream_id", 0)
            r = self.responses.get(sid)
            if isinstance(event, h2.events.ResponseReceived) and r is not None:
                r.headers = _text(event.headers)
                r.status = int(r.headers.get(":status", 0))
            elif isinstance(event, h2.events.DataReceived) and r is not None:
                r.body += event.data
                self.conn.acknowledge_received_data(event.flow_controlled_length, sid)
            elif isinstance(event, h2.events.TrailersReceived) and r is not None:
                r.trailers = _text(event.headers)
            elif isinstance(event, h2.events.StreamEnded) and r is not None:
                r.ended = True
            elif isinstance(event, h2.events.StreamReset) and r is not None:
                r.reset = int(event.error_code)
        self._flush()

    def wait(self, *sids: int) -> list[H2Response]:
        """Reads until every given stream has ended or was reset."""
        deadline = time.monotonic() + self.timeout
        while not all(self.responses[s].ended or self.responses[s].reset is not None for s in sids):
            if time.monotonic() > deadline:
                raise TimeoutError(f"streams {[s for s in sids if not self.responses[s].ended]} unanswered")
            self._read_some()
        return [self.responses[s] for s in sids]

    def close(self) -> None:
        try:
            self.conn.close_connection()
            self._flush()
        except (OSError, h2.exceptions.ProtocolError):
            pass
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class H2Upstream:
    """A TLS service on 127.0.0.1 that speaks only HTTP/2 and records every request."""

    def __init__(self, tls: Leaf, responder: Optional[Responder] = None):
        self.requests: list[ReceivedRequest] = []
        self.trailers: list[dict[str, str]] = []
        self.lock = threading.Lock()
        self.responder: Responder = responder or (lambda req: ScriptedResponse())
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(tls.cert, tls.key)
        self.ctx.set_alpn_protocols(["h2"])
        self.negotiated: list[Optional[str]] = []
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.port = self._sock.getsockname()[1]
        self.tls = True
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def respond_with(self, response: ScriptedResponse) -> None:
        self.responder = lambda req: response

    def start(self) -> "H2Upstream":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._sock.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                raw, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(raw,), daemon=True).start()

    def _serve(self, raw: socket.socket) -> None:
        try:
            sock = self.ctx.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError):
            raw.close()
            return
        with self.lock:
            self.negotiated.append(sock.selected_alpn_protocol())
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
        conn.initiate_connection()
        sock.sendall(conn.data_to_send())
        pending: dict[int, tuple[dict[str, str], bytearray]] = {}
        try:
            while True:
                data = sock.recv(65536)
                if not data:
                    return
                for event in conn.receive_data(data):
                    if isinstance(event, h2.events.RequestReceived):
                        pending[event.stream_id] = (_text(event.headers), bytearray())
                    elif isinstance(event, h2.events.DataReceived):
                        pending[event.stream_id][1].extend(event.data)
                        conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                    elif isinstance(event, h2.events.TrailersReceived):
                        with self.lock:
                            self.trailers.append(_text(event.headers))
                    elif isinstance(event, h2.events.StreamEnded):
                        headers, body = pending.pop(event.stream_id)
                        self._answer(conn, event.stream_id, headers, bytes(body))
                    elif isinstance(event, h2.events.StreamReset):
                        pending.pop(event.stream_id, None)
                sock.sendall(conn.data_to_send())
        except (OSError, h2.exceptions.ProtocolError):
            return
        finally:
            sock.close()

    def _answer(self, conn, sid: int, headers: dict[str, str], body: bytes) -> None:
        req = ReceivedRequest(headers.get(":method", ""), headers.get(":path", ""),
                              {k: v for k, v in headers.items() if not k.startswith(":")}, body)
        with self.lock:
            self.requests.append(req)
        resp = self.responder(req)
        out = [(":status", str(resp.status))] + [(k.lower(), v) for k, v in resp.headers.items()]
        if resp.reset_after is None:
            out.append(("content-length", str(len(resp.body))))
        complete = resp.reset_after is None
        conn.send_headers(sid, out, end_stream=not resp.body and complete and not resp.trailers)
        payload = resp.body if complete else resp.body[:resp.reset_after]
        window = conn.local_flow_control_window(sid)
        if len(payload) > window:
            payload = payload[:window]  # scripted bodies stay small; never block the server thread
        if payload:
            conn.send_data(sid, payload, end_stream=complete and not resp.trailers)
        if not complete:
            conn.reset_stream(sid, error_code=h2.errors.ErrorCodes.INTERNAL_ERROR)
        elif resp.trailers:
            conn.send_headers(sid, list(resp.trailers.items()), end_stream=True)
