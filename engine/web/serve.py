"""`cadence serve`: the Command Center on waitress, a production WSGI server.

waitress serves each request on one of a fixed pool of threads; each thread keeps its own
SQLite connections (engine_calls.Backends). SIGTERM and Ctrl-C stop it cleanly: requests
in progress finish, connections close.
"""

from __future__ import annotations

import errno
import signal
import socket
from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from ..errors import UsageError
from .app import close_app, create_app

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
THREADS = 8


def serve(
    db: str,
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    base: str | None = None,
    clock: Callable[[], datetime] | None = None,
    ready: Callable[[str, str], None] = lambda address, base: None,
    threads: int = THREADS,
) -> None:
    """Serve until SIGTERM or Ctrl-C; `ready(address, base URL)` once listening."""
    from waitress.server import create_server

    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]  # an IPv6 address as a URL writes it
    _check_host(host)
    app = create_app(db, base=base, clock=clock)
    try:
        sockets: dict[int, Any] = {}
        try:
            # Behind a proxy at https://host/PREFIX, links and redirects keep the prefix
            # whether or not the proxy strips it from the paths it passes on.
            prefix = urlsplit(app.config["CADENCE_BASE_URL"]).path.rstrip("/")
            server = create_server(
                app, map=sockets, host=host, port=port, threads=threads, ident="cadence",
                url_prefix=prefix,
            )  # fmt: skip
        except OSError as exc:
            for channel in list(sockets.values()):  # waitress's wake-up pipe, made first
                channel.close()
            if exc.errno == errno.EADDRNOTAVAIL:
                hint = (
                    f"{host} is not an address of this machine: give --host one of its own "
                    "(127.0.0.1 for this machine only, 0.0.0.0 or :: for every interface)"
                )
            else:
                hint = "choose another --port, or stop what is using this one"
            raise UsageError(
                f"cannot listen on {url_host(host)}:{port}: {exc.strerror or exc}", hint=hint
            ) from None

        def stop(signum: int, frame: object) -> None:
            raise SystemExit(0)  # waitress's loop catches it and shuts its threads down

        previous = signal.signal(signal.SIGTERM, stop)
        try:
            where = url_host(str(server.effective_host))  # type: ignore[union-attr]
            address = f"http://{where}:{server.effective_port}"  # type: ignore[union-attr]
            ready(address, app.config["CADENCE_BASE_URL"])
            server.run()
        finally:
            signal.signal(signal.SIGTERM, previous)
    finally:
        close_app(app)


def url_host(host: str) -> str:
    """`host` as a URL writes it: an IPv6 address in brackets (http://[::1]:8080)."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def _check_host(host: str) -> None:
    """UsageError naming --host when it is no address and resolves to none (waitress would
    only say "Invalid host/port specified.")."""
    problem = ""
    if not host.strip():
        problem = "is empty"
    else:
        try:
            socket.getaddrinfo(host, 0, socket.AF_UNSPEC, socket.SOCK_STREAM, 0, socket.AI_PASSIVE)
        except (OSError, UnicodeError) as exc:
            problem = f"is not an IP address or a host name that resolves ({exc})"
    if problem:
        raise UsageError(
            f"--host {host!r} {problem}",
            hint="give an address of this machine to listen on: 127.0.0.1 (this machine "
            "only), 0.0.0.0 or :: (every interface), or a name that resolves to one",
        )
