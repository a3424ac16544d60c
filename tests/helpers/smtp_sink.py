"""An SMTP server in a process of its own (for another network namespace).

    python -m tests.helpers.smtp_sink CERT KEY PORT RECEIVED

Listens on every address of its namespace with STARTTLS and AUTH, as `smtp_server`, and
appends the Message-ID of every message it accepts to RECEIVED, one a line, flushed at
once: what a mail server really got, readable while it runs. SIGTERM stops it.
"""

from __future__ import annotations

import signal
import ssl
import sys
import threading
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

from tests.helpers.smtp_server import Recorder, _authenticate


class Appending(Recorder):
    def __init__(self, received: Path) -> None:
        super().__init__()
        self.out = received.open("a", encoding="utf-8")

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        answer = await super().handle_DATA(server, session, envelope)
        with self.lock:
            self.out.write(str(self.received.pop().message["Message-ID"]) + "\n")
            self.out.flush()
        return answer


def main() -> None:
    cert, key, port, received = sys.argv[1:5]
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    controller = Controller(
        Appending(Path(received)),
        hostname="0.0.0.0",
        port=int(port),
        tls_context=context,
        require_starttls=True,
        auth_require_tls=True,
        authenticator=_authenticate,
        auth_required=True,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    controller.start()
    print("ready", flush=True)
    stop.wait()
    controller.stop()


if __name__ == "__main__":
    main()
