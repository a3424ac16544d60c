"""`outbox:DIR`: each message becomes `DIR/<message-id>.eml`, the embedded default.

A message is first *staged*: written in full to a hidden file in the same folder
(`.tmp-<pid>.<host>-<message-id>.staged`, `<host>` a tag of the machine and PID namespace;
never a name ending in `.eml`). Handing it over is one
`renameat2(RENAME_NOREPLACE)` (else `link` + `unlink`) of that file into place: a reader
never sees half a message, and a second delivery of the same Message-ID (an operator's
`resolve --resend`) gets a `.2.eml` suffix instead of silently replacing the first, so
duplicates stay visible (a plain `rename()` would replace it).

Staging is not delivery, so the runner's render worker stages a batch while the runner
commits `sending` for it; the runner then hands over (renames) each message that passed
the last check and discards the others. `flush` makes the batch durable before the
runner may record any of it `sent`: the files' contents (`syncfs` of the outbox's file
system where Linux has it, else an `fsync` of each file), then the directory entries
(one `fsync` of the folder). A crash after a hand-over and before `flush` leaves the row
`sending`: `unknown`, resolved by an operator like any other unknown send. Staged files
a crashed run left behind are removed by a later run (`sweep`): at once when it runs in
the same PID namespace on the same machine and the writer is gone, else an hour later.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import functools
import hashlib
import os
import re
import socket
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from engine.errors import CadenceError, UsageError
from engine.faults import fault
from engine.transports import Envelope, Result, Staged

_UNSAFE = re.compile(r"[^A-Za-z0-9._@+-]")
_STAGED = ".tmp-"


def file_name(message_id: str) -> str:
    """`<abc@acme.example>` → `abc@acme.example.eml` (nothing that escapes the folder)."""
    return _UNSAFE.sub("_", message_id.strip("<>")).lstrip(".") + ".eml"


@functools.cache
def process_space() -> str:
    """Eight hex digits naming this machine and PID namespace: where a PID means something.

    A staged file's writer can be looked up (is it still running?) only from the same
    space; a runner in another container or on another machine sharing the folder is not.
    """
    try:
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        namespace = ""
    seed = f"{socket.gethostname()}\0{namespace}".encode()
    return hashlib.sha256(seed).hexdigest()[:8]


def staged_name(pid: int, message_id: str, space: str | None = None) -> str:
    """`.tmp-<pid>.<space>-<message-id>.staged`: hidden, never matching `*.eml`."""
    stem = file_name(message_id).removesuffix(".eml")
    return f"{_STAGED}{pid}.{space or process_space()}-{stem}.staged"


def _nothing() -> None:
    pass


def _staged_writer(name: str) -> tuple[int, str] | None:
    """(PID, process space) of a staged file's writer, from its name; else None."""
    if not name.startswith(_STAGED):
        return None
    writer, dash, _ = name[len(_STAGED) :].partition("-")
    pid, dot, space = writer.partition(".")
    return (int(pid), space) if dash and dot and pid.isdigit() else None


def _syncfs() -> Callable[[int], int] | None:
    """Linux `syncfs(fd)`: one call makes a whole batch of small files' data durable."""
    if os.uname().sysname != "Linux":
        return None
    try:
        func = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return None
    func.argtypes = [ctypes.c_int]
    func.restype = ctypes.c_int
    return func


_AT_FDCWD = -100


def _renameat2() -> Callable[[int, bytes, int, bytes, int], int] | None:
    """Linux `renameat2` (glibc >= 2.28), wrapped to return 1 when renamed, else 0 with
    the reason in `ctypes.get_errno()`."""
    if os.uname().sysname != "Linux":
        return None
    try:
        func = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None
    func.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    func.restype = ctypes.c_int

    def rename(olddir: int, old: bytes, newdir: int, new: bytes, flags: int) -> int:
        return int(func(olddir, old, newdir, new, flags) == 0)

    return rename


STALE_AFTER = 3600.0  # seconds: a staged file from elsewhere this old is a crash's


_HAS_PROC = os.path.exists(f"/proc/{os.getpid()}/stat")


def _alive(pid: int) -> bool:
    """Whether process `pid` still runs. A zombie does not: a killed runner's worker
    stays one until its new parent reaps it, which an init in a container may never do."""
    if _HAS_PROC:
        try:
            with open(f"/proc/{pid}/stat", "rb") as stat:
                return stat.read().rpartition(b")")[2].split()[:1] not in ([b"Z"], [b"X"])
        except FileNotFoundError:
            return False
        except OSError:
            pass  # unreadable: ask the kernel
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, someone else's
    return True


class OutboxTransport:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._prefix = os.path.join(folder, "")  # `folder/`: joined to each name by hand
        self._ready = False
        self._placed: list[str] = []
        self._syncfs = _syncfs()
        self._renameat2 = _renameat2()

    def _ensure(self) -> None:
        if not self._ready:
            try:
                self.folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise UsageError(
                    f"cannot create outbox {self.folder}: {exc.strerror}",
                    hint="point outbox:DIR (--transport / CADENCE_TRANSPORT) at a folder "
                    "you can write to; it is created if missing",
                ) from None
            self._ready = True

    def open(self) -> None:
        self._ensure()
        self.sweep()

    def sweep(self) -> None:
        """Remove staged files left by crashed runs.

        A file written on this machine, in this PID namespace, goes as soon as its writer
        is gone. One from elsewhere (another container or machine sharing the folder),
        whose writer cannot be looked up, goes once it is `STALE_AFTER` old: a live
        runner's staged batch is seconds old, so it is never touched.
        """
        cutoff = time.time() - STALE_AFTER
        here = process_space()
        try:
            entries = os.scandir(self.folder)
        except OSError:
            return
        with entries:
            for entry in entries:
                writer = _staged_writer(entry.name)
                if writer is None:
                    continue
                pid, space = writer
                try:
                    if space == here:
                        if _alive(pid):
                            continue
                    elif entry.stat(follow_symlinks=False).st_mtime >= cutoff:
                        continue
                    os.unlink(entry.path)
                except FileNotFoundError:
                    continue  # another runner swept it first

    def stage(self, envelope: Envelope, data: bytes) -> Staged:
        """Write the whole message to a hidden file; nothing is delivered yet.

        Safe before the runner commits `sending`: until `send_staged` renames it, no
        reader of the outbox sees it.
        """
        self._ensure()
        tmp = self._prefix + staged_name(os.getpid(), envelope.message_id)
        try:
            try:  # a fresh name: nothing to truncate (a crashed run's leftover is replaced)
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                os.unlink(tmp)
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
            finally:
                os.close(fd)
        except OSError as exc:
            raise CadenceError(
                f"cannot write to outbox {self.folder}: {exc.strerror}",
                hint="nothing was handed over; free space or fix the folder's permissions, "
                "then run again (these emails are claimed again once their lease ends)",
            ) from None
        return Staged(envelope.message_id, tmp)

    def send_staged(self, staged: Staged) -> str:
        """Hand a staged message over: move it into place as `<message-id>.eml`."""
        name = file_name(staged.message_id)
        target, n = name, 1
        while True:
            try:
                self._place(staged.handle, self._prefix + target)
                break
            except FileExistsError:
                n += 1
                target = f"{name[: -len('.eml')]}.{n}.eml"
            except OSError as exc:
                raise CadenceError(
                    f"cannot move {staged.handle} into outbox {self.folder}: {exc.strerror}",
                    hint="its email stays `sending` and shows as unknown in `cadence status` "
                    "once its lease ends; settle it with `cadence resolve`",
                ) from None
        self._placed.append(target)
        fault("after-250")
        return f"written {target}"

    def discard(self, staged: Staged) -> None:
        """Drop a staged message that will not be sent (stopped, or no longer ours)."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(staged.handle)

    # A batch is handed over, then made durable at once (`flush`).
    in_doubt = 500

    def send(self, envelope: Envelope, data: bytes) -> str:
        return self.send_staged(self.stage(envelope, data))

    def send_many(self, messages: Sequence[tuple[Envelope, bytes]]) -> list[Result]:
        return [self.send(envelope, data) for envelope, data in messages]

    def flush(self) -> None:
        """Make every file handed over since the last flush durable.

        An error is raised after as much as could be was made durable: the runner then
        records nothing, and the batch becomes `unknown` when its lease ends.
        """
        self.take_durable()()

    def take_durable(self) -> Callable[[], None]:
        placed, self._placed = self._placed, []
        return functools.partial(self._sync, placed) if placed else _nothing

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
