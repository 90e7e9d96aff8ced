"""Where the server is and which token to present.

Arguments win, then the environment (``IFC_SERVER``, ``IFC_TOKEN``, as the
``ifc`` CLI reads them), then a local server's ``./ifc-data/admin.token``
(``IFC_DATA_DIR`` moves it), as the CLI does.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from .errors import UnauthorizedError

DEFAULT_SERVER = "http://127.0.0.1:7400"
DEFAULT_TIMEOUT = 10.0


@dataclass(frozen=True)
class Connection:
    """A resolved server address and admin token."""

    server: str
    token: str
    timeout: float = DEFAULT_TIMEOUT
    ca_cert: Optional[str] = None


def resolve(
    server: Optional[str] = None,
    token: Optional[str] = None,
    *,
    host: Optional[str] = None,
    port: Optional[int] = None,
    timeout: Optional[float] = None,
    ca_cert: Optional[str] = None,
) -> Connection:
    """Resolves the connection; raises :class:`UnauthorizedError` if no token is found."""
    if server is None and (host is not None or port is not None):
        default = _split(os.environ.get("IFC_SERVER") or DEFAULT_SERVER)
        scheme, default_host, default_port = default
        server = f"{scheme}://{host or default_host}:{port or default_port}"
    server = (server or os.environ.get("IFC_SERVER") or DEFAULT_SERVER).rstrip("/")
    if "://" not in server:
        server = "http://" + server
    token = token or os.environ.get("IFC_TOKEN") or _token_file()
    if not token:
        raise UnauthorizedError(
            "no admin token: pass token=..., set IFC_TOKEN, or run next to a local "
            "server's ./ifc-data/admin.token"
        )
    return Connection(
        server=server,
        token=token,
        timeout=DEFAULT_TIMEOUT if timeout is None else float(timeout),
        ca_cert=ca_cert or os.environ.get("IFC_CA_CERT"),
    )


def _split(url: str) -> "tuple[str, str, int]":
    scheme, _, rest = url.rpartition("://")
    scheme = scheme or "http"
    hostport = rest.split("/", 1)[0]
    host, _, port = hostport.rpartition(":")
    if not host:
        return scheme, hostport, 443 if scheme == "https" else 80
    return scheme, host, int(port)


def _token_file() -> Optional[str]:
    path = Path(os.environ.get("IFC_DATA_DIR") or "./ifc-data") / "admin.token"
    try:
        return path.read_text().strip() or None
    except OSError:
        return None
