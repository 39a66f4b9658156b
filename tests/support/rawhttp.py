"""HTTP/1.1 written by hand over TLS, for what http.client will not send:
a body in many small writes (one chunk per write), trailers, `Expect:
100-continue` with a wait for the interim response, a request abandoned
mid-body."""
from __future__ import annotations

import socket
import ssl
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional


@dataclass
class RawResponse:
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    interim: list[int] = field(default_factory=list)  # 1xx statuses seen first
    closed: bool = False  # the connection ended before a complete response

    def json(self):
        import json
        return json.loads(self.body)


class RawConnection:
    def __init__(self, port: int, ca: Path, host: str = "localhost", timeout: float = 15.0):
        ctx = ssl.create_default_context(cafile=str(ca))
        ctx.set_alpn_protocols(["http/1.1"])
        raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = ctx.wrap_socket(raw, server_hostname=host)
        self.host = host
        self.buf = b""

    def head(self, method: str, path: str, headers: dict[str, str]) -> None:
        lines = [f"{method} {path} HTTP/1.1", f"host: {self.host}"] + [f"{k}: {v}" for k, v in headers.items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def chunked(self, pieces: Iterable[bytes], trailers: Optional[dict[str, str]] = None,
                pause: float = 0.0) -> None:
        """Each piece as one chunk in its own write; then the last chunk."""
        for piece in pieces:
            self.sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
            if pause:
                time.sleep(pause)
        tail = "".join(f"{k}: {v}\r\n" for k, v in (trailers or {}).items())
        self.sock.sendall(b"0\r\n" + tail.encode() + b"\r\n")

    def _fill(self) -> bool:
        try:
            data = self.sock.recv(65536)
        except (ConnectionError, ssl.SSLError):
            data = b""
        self.buf += data
        return bool(data)

    def _line(self) -> Optional[bytes]:
        while b"\r\n" not in self.buf:
            if not self._fill():
                return None
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exactly(self, n: int) -> Optional[bytes]:
        while len(self.buf) < n:
            if not self._fill():
                return None
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def response(self, stop_after_interim: bool = False) -> RawResponse:
        r = RawResponse()
        while True:
            line = self._line()
            if line is None:
                r.closed = True
                return r
            status = int(line.split()[1])
            headers = {}
            while (h := self._line()):
                k, _, v = h.decode().partition(":")
                headers[k.strip().lower()] = v.strip()
            if h is None:
                r.closed = True
                return r
            if 100 <= status < 200:
                r.interim.append(status)
                if stop_after_interim:
                    return r
                continue
            r.status, r.headers = status, headers
            break
        if r.headers.get("transfer-encoding", "").lower() == "chunked":
            while True:
                size_line = self._line()
                if size_line is None:
                    r.closed = True
                    return r
                size = int(size_line.split(b";")[0], 16)
                if size == 0:
                    while self._line():
                        pass
                    return r
                piece = self._exactly(size + 2)
                if piece is None:
                    r.closed = True
                    return r
                r.body += piece[:-2]
        length = int(r.headers.get("content-length", "0"))
        body = self._exactly(length)
        if body is None:
            r.body, r.closed = self.buf, True
        else:
            r.body = body
        return r

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
