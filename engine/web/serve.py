"""`cadence serve`: the Command Center on waitress, a production WSGI server.

waitress serves each request on one of a fixed pool of threads; each thread keeps its own
SQLite connections (engine_calls.Backends). SIGTERM and Ctrl-C stop it cleanly: requests
in progress finish, connections close.
"""

from __future__ import annotations

import signal
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
            raise UsageError(
                f"cannot listen on {host}:{port}: {exc.strerror or exc}",
                hint="choose another --port, or stop what is using this one",
            ) from None

        def stop(signum: int, frame: object) -> None:
            raise SystemExit(0)  # waitress's loop catches it and shuts its threads down

        previous = signal.signal(signal.SIGTERM, stop)
        try:
            address = f"http://{server.effective_host}:{server.effective_port}"  # type: ignore[union-attr]
            ready(address, app.config["CADENCE_BASE_URL"])
            server.run()
        finally:
            signal.signal(signal.SIGTERM, previous)
    finally:
        close_app(app)
