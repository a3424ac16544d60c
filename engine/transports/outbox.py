"""`outbox:DIR`: each message becomes `DIR/<message-id>.eml`, the embedded default.

Each message is written in full to a file with no name yet (Linux `O_TMPFILE`), then
given its name with one `linkat`, which never replaces a file: a reader never sees half a
message, and a second delivery of the same Message-ID (an operator's `resolve --resend`)
gets a `.2.eml` suffix instead of silently replacing the first, so duplicates stay
visible. A crash before the `linkat` leaves nothing behind. Where the kernel or the file
system lacks `O_TMPFILE` (or a name for an open file), the message goes to a hidden file
in the same folder (`.tmp-<pid>-<id>`, never a name ending in `.eml`) and is moved into
place with one `renameat2(RENAME_NOREPLACE)` (else `link` + `unlink`). Measured on
`bench/run`'s 10,000 files: 27-37 µs a file against 43-56 µs for the hidden file and its
rename.

A message that cannot be written or moved into place was not handed over: it and the rest
of the call come back as `TransportDown`, so the runner makes them due again at once and
stops with a clear error; nothing written is lost, nothing unwritten turns `unknown`.
`flush` makes what was handed over durable before the runner records any of it `sent`:
the files' contents (`syncfs` of the outbox's file system where Linux has it, else an
`fsync` of each file), then the directory entries (one `fsync` of the folder). A crash
after a hand-over and before `flush` leaves the row `sending`: `unknown`, resolved by an
operator. A hidden file a crash left behind is removed by a later run once it is an hour
old (a live writer's file exists for microseconds).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import cast

from ..errors import CadenceError, UsageError
from ..faults import fault
from . import Envelope, Ready, Result, TransportDown, Withheld

_UNSAFE = re.compile(r"[^A-Za-z0-9._@+-]")
_HIDDEN = ".tmp-"
STALE_AFTER = 3600.0  # seconds: a hidden file this old is a crashed run's


def file_name(message_id: str) -> str:
    """`<abc@acme.example>` → `abc@acme.example.eml` (nothing that escapes the folder)."""
    return _UNSAFE.sub("_", message_id.strip("<>")).lstrip(".") + ".eml"


def _libc() -> ctypes.CDLL:
    """The C library's symbols as the process already has them (`dlopen(NULL)`): no
    `find_library`, which runs `ldconfig` in a subprocess on every start."""
    return ctypes.CDLL(None, use_errno=True)


def _linux_call(name: str, *argtypes: type) -> Callable[..., int] | None:
    """The C library's `name` with its argument types (returning an int), or None where
    this is not Linux or the C library lacks it."""
    if os.uname().sysname != "Linux":
        return None
    try:
        func = getattr(_libc(), name)
    except (OSError, AttributeError):
        return None
    func.argtypes = list(argtypes)
    func.restype = ctypes.c_int
    return cast("Callable[..., int]", func)


def _syncfs() -> Callable[[int], int] | None:
    """Linux `syncfs(fd)`: one call makes a whole batch of small files' data durable."""
    return _linux_call("syncfs", ctypes.c_int)


_AT_FDCWD = -100
_PATH = (ctypes.c_int, ctypes.c_char_p)  # a folder's descriptor and a name in it


def _renameat2() -> Callable[[int, bytes, int, bytes, int], int] | None:
    """Linux `renameat2` (glibc >= 2.28), wrapped to return 1 when renamed, else 0 with
    the reason in `ctypes.get_errno()`."""
    func = _linux_call("renameat2", *_PATH, *_PATH, ctypes.c_uint)
    if func is None:
        return None

    def rename(olddir: int, old: bytes, newdir: int, new: bytes, flags: int) -> int:
        return int(func(olddir, old, newdir, new, flags) == 0)

    return rename


_AT_EMPTY_PATH = 0x1000
# `open(O_TMPFILE)` or `linkat(AT_EMPTY_PATH)` not offered here: the hidden-file path.
_REFUSED = frozenset({errno.EROFS, errno.EPERM, errno.EACCES})  # writes refused
_NO_TMPFILE = frozenset({errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL, errno.ENOSYS})
_NO_EMPTY_PATH = frozenset({errno.ENOENT, errno.EPERM, errno.EINVAL, errno.ENOSYS})


def _linkat() -> Callable[[int, bytes], int] | None:
    """Linux `linkat(fd, "", AT_FDCWD, path, AT_EMPTY_PATH)`, wrapped to return 1 when the
    open file `fd` got the name `path`, else 0 with the reason in `ctypes.get_errno()`."""
    func = _linux_call("linkat", *_PATH, *_PATH, ctypes.c_int)
    if func is None or not hasattr(os, "O_TMPFILE"):
        return None

    def link(fd: int, path: bytes) -> int:
        return int(func(fd, b"", _AT_FDCWD, path, _AT_EMPTY_PATH) == 0)

    return link


class OutboxTransport:
    in_doubt = 10_000  # every message of a batch is written before one `flush`

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._prefix = os.path.join(folder, "")  # `folder/`: joined to each name by hand
        self._hidden = ""  # set by `open`
        self._ready = False
        self._placed: list[str] = []
        self._syncfs = _syncfs()
        self._linkat = _linkat()  # None: the hidden file and its rename
        self._renameat2 = _renameat2()

    def open(self) -> None:
        if self._ready:
            return
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(
                f"cannot create outbox {self.folder}: {exc.strerror}",
                hint="point outbox:DIR (--transport / CADENCE_TRANSPORT) at a folder "
                "you can write to; it is created if missing",
            ) from None
        self._ready = True
        # `folder/.tmp-<pid>-`: this process's hidden names (one getpid per run, not
        # one system call per message).
        self._hidden = f"{self._prefix}{_HIDDEN}{os.getpid()}-"
        self.sweep()

    def sweep(self) -> None:
        """Remove hidden files crashed runs left behind (an hour old or more)."""
        cutoff = time.time() - STALE_AFTER
        try:
            entries = os.scandir(self.folder)
        except OSError:
            return
        with entries:
            for entry in entries:
                if not entry.name.startswith(_HIDDEN):
                    continue
                with contextlib.suppress(OSError):
                    if entry.stat(follow_symlinks=False).st_mtime < cutoff:
                        os.unlink(entry.path)

    def send_many(
        self, messages: Sequence[tuple[Envelope, bytes]], ready: Ready | None = None
    ) -> list[Result]:
        allowed = range(len(messages)) if ready is None else set(ready())
        self.open()
        results: list[Result] = []
        for n, (envelope, data) in enumerate(messages):
            if n not in allowed:
                results.append(Withheld())
                continue
            try:
                results.append(self._send(envelope, data))
            except OSError as exc:
                left = sum(1 for k in range(n, len(messages)) if k in allowed)
                # A folder that refuses writes is a setting to fix (exit 2: `run --every`
                # stops); a full disk or an I/O error may pass (exit 1: tried again).
                refused = exc.errno in _REFUSED
                fix = (
                    "make the folder writable (read-only mount, immutable flag, "
                    "permissions) or point outbox:DIR elsewhere"
                    if refused
                    else "free space on its disk, then run again"
                )
                down = TransportDown(
                    (UsageError if refused else CadenceError)(
                        f"cannot write to outbox {self.folder}: {exc.strerror}",
                        hint=f"the {left} email(s) of this batch not written are due again "
                        f"at once, as is everything else still due; {fix}",
                    )
                )
                results.extend([down] * (len(messages) - n))
                break
        return results

    def _send(self, envelope: Envelope, data: bytes) -> str:
        name = file_name(envelope.message_id)
        target = self._send_unnamed(name, data) if self._linkat is not None else None
        if target is None:
            target = self._send_hidden(name, data)
        self._placed.append(target)
        fault("after-250")
        return f"written {target}"

    def _send_unnamed(self, name: str, data: bytes) -> str | None:
        """Write `data` to a file with no name, then name it `name` (or `.2.eml`, …):
        the name given, or None (and the hidden-file path from now on) where this
        kernel or file system cannot."""
        assert self._linkat is not None
        try:
            fd = os.open(self.folder, os.O_WRONLY | os.O_TMPFILE, 0o644)
        except OSError as exc:
            if exc.errno not in _NO_TMPFILE:
                raise
            self._linkat = None
            return None
        try:
            _write_all(fd, data)
            target, n = name, 1
            while not self._linkat(fd, os.fsencode(self._prefix + target)):
                err = ctypes.get_errno()
                if err in _NO_EMPTY_PATH and n == 1:
                    self._linkat = None
                    return None
                if err != errno.EEXIST:
                    raise OSError(err, os.strerror(err), self._prefix + target)
                n += 1
                target = _numbered(name, n)
            return target
        finally:
            os.close(fd)

    def _send_hidden(self, name: str, data: bytes) -> str:
        """Write `data` to a hidden file, then move it to `name` (or `.2.eml`, …)."""
        tmp = f"{self._hidden}{name[: -len('.eml')]}"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                _write_all(fd, data)
            finally:
                os.close(fd)
            target, n = name, 1
            while True:
                try:
                    self._place(tmp, self._prefix + target)
                    return target
                except FileExistsError:
                    n += 1
                    target = _numbered(name, n)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def flush(self) -> None:
        """Make every file handed over since the last flush durable.

        An error is raised after as much as could be was made durable: the runner then
        records nothing, and the batch becomes `unknown` when its lease ends.
        """
        placed, self._placed = self._placed, []
        if placed:
            self._sync(placed)

    def _place(self, tmp: str, target: str) -> None:
        """Move `tmp` to `target`, never replacing a file (FileExistsError instead).

        One `renameat2(RENAME_NOREPLACE)` where Linux and the file system have it, else
        `link` + `unlink` (`rename` alone would silently replace a duplicate).
        """
        if self._renameat2 is not None:
            if self._renameat2(_AT_FDCWD, os.fsencode(tmp), _AT_FDCWD, os.fsencode(target), 1):
                return
            err = ctypes.get_errno()
            if err == errno.EEXIST:
                raise FileExistsError(err, os.strerror(err), target)
            if err not in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
                raise OSError(err, os.strerror(err), target)
            self._renameat2 = None  # not on this kernel or file system: link + unlink
        os.link(tmp, target)
        os.unlink(tmp)

    def _sync(self, names: list[str]) -> None:
        try:
            fd = os.open(self.folder, os.O_RDONLY)
            try:
                if self._syncfs is None or self._syncfs(fd) != 0:
                    for name in names:
                        file_fd = os.open(self.folder / name, os.O_RDONLY)
                        try:
                            os.fsync(file_fd)
                        finally:
                            os.close(file_fd)
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise CadenceError(
                f"cannot make the emails just written to outbox {self.folder} durable: "
                f"{exc.strerror}",
                hint=f"their {len(names)} email(s) stay `sending` and show as unknown in "
                "`cadence status` once their lease ends; check the disk, then settle them "
                "with `cadence resolve`",
            ) from None

    def close(self) -> None:
        self._placed = []  # never flushed: the rows stay `sending`, then `unknown`


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _numbered(name: str, n: int) -> str:
    """`id.eml` as the `n`th file of its Message-ID: `id.n.eml`."""
    return f"{name[: -len('.eml')]}.{n}.eml"
