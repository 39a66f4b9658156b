"""A tiny HTTPS client that shows exactly what came back."""
from __future__ import annotations

import http.client
import json
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self):
        return json.loads(self.body)


def request(port: int, method: str, path: str, *, ca: Optional[Path] = None,
            headers: Optional[dict[str, str]] = None, body: Union[bytes, str, None] = None,
            host: str = "localhost", timeout: float = 15.0) -> Response:
    """One request on a fresh connection to 127.0.0.1:port (TLS when `ca` is given)."""
    if isinstance(body, str):
        body = body.encode()
    if ca is not None:
        ctx = ssl.create_default_context(cafile=str(ca))
        conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=timeout, context=ctx)
    else:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        conn.putheader("host", host)
        for k, v in (headers or {}).items():
            conn.putheader(k, v)
        if body is not None:
            conn.putheader("content-length", str(len(body)))
        conn.endheaders(body)
        r = conn.getresponse()
        data = r.read()
        return Response(r.status, {k.lower(): v for k, v in r.getheaders()}, data)
    finally:
        conn.close()
