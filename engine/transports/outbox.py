"""`outbox:DIR`: each message becomes `DIR/<message-id>.eml`, the embedded default.

Written to a temporary file in the same folder, then linked into place: a reader never sees half a
message, and a crash leaves at most a stray `.tmp-*` file. A second delivery of the same
Message-ID (an operator's `resolve --resend`) gets a `.2.eml` suffix instead of silently
replacing the first, so duplicates stay visible.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from engine.errors import UsageError
from engine.faults import fault
from engine.transports import Envelope

_UNSAFE = re.compile(r"[^A-Za-z0-9._@+-]")


def file_name(message_id: str) -> str:
    """`<abc@acme.example>` → `abc@acme.example.eml` (nothing that escapes the folder)."""
    return _UNSAFE.sub("_", message_id.strip("<>")).lstrip(".") + ".eml"


class OutboxTransport:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._ready = False
        self._pid = os.getpid()

    def _ensure(self) -> None:
        if not self._ready:
            try:
                self.folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise UsageError(f"cannot create outbox {self.folder}: {exc.strerror}") from None
            self._ready = True

    def open(self) -> None:
        self._ensure()

    def send(self, envelope: Envelope, data: bytes) -> str:
        self._ensure()
        name = file_name(envelope.message_id)
        tmp = self.folder / f".tmp-{self._pid}-{name}"
        with open(tmp, "wb") as fh:
            fh.write(data)
        # link() never replaces an existing file (rename would): even two processes
        # writing the same Message-ID at once leave two files, never one.
        target = self.folder / name
        n = 1
        while True:
            try:
                os.link(tmp, target)
                break
            except FileExistsError:
                n += 1
                target = self.folder / f"{name[: -len('.eml')]}.{n}.eml"
        os.unlink(tmp)
        fault("after-250")
        return f"written {target.name}"

    def flush(self) -> None:
        # One directory fsync per batch makes the renames durable before `sent` is
        # committed; the per-file fsync is skipped on purpose (see README: the outbox is
        # crash-safe for process crashes, it is not a mail server).
        if self._ready:
            fd = os.open(self.folder, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def close(self) -> None:
        return None
