"""A throw-away Dovecot IMAP server on 127.0.0.1, as the user running the tests.

Rootless (Dovecot's "HowTo/Rootless"): every service runs as the current user, the base,
state and mail folders live in a temp dir, one passwd-file user, TLS with a self-signed
certificate for 127.0.0.1 (`tests.helpers.certs`), which the clients trust as its own CA.
`imaps` on one free port, `imap` with STARTTLS on another, and a third plain `imap` port
where STARTTLS is switched off (to prove it is refused).
"""

from __future__ import annotations

import getpass
import imaplib
import os
import pwd
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest

from tests.helpers.certs import self_signed
from tests.helpers.smtp_server import free_port

DOVECOT = "/usr/sbin/dovecot"
USER = "sales"
PASSWORD = "s3cret-imap-pass"


@dataclass(frozen=True)
class Dovecot:
    folder: Path
    imaps_port: int
    imap_port: int
    plain_port: int  # STARTTLS not offered
    cafile: Path  # the server's self-signed certificate: its own CA

    @property
    def imaps_url(self) -> str:
        return f"imaps://{USER}@127.0.0.1:{self.imaps_port}/INBOX"

    @property
    def imap_url(self) -> str:
        return f"imap://{USER}@127.0.0.1:{self.imap_port}/INBOX"

    @property
    def plain_url(self) -> str:
        return f"imap://{USER}@127.0.0.1:{self.plain_port}/INBOX"

    def env(self) -> dict[str, str]:
        return {
            "CADENCE_IMAP_URL": self.imaps_url,
            "CADENCE_IMAP_PASSWORD": PASSWORD,
            "CADENCE_IMAP_CAFILE": str(self.cafile),
        }

    @contextmanager
    def client(self) -> Iterator[imaplib.IMAP4_SSL]:
        context = ssl.create_default_context(cafile=str(self.cafile))
        imap = imaplib.IMAP4_SSL("127.0.0.1", self.imaps_port, ssl_context=context)
        imap.login(USER, PASSWORD)
        try:
            yield imap
        finally:
            imap.logout()

    def append(self, *messages: bytes, when: datetime | None = None, folder: str = "INBOX") -> None:
        """Put messages into a folder with IMAP APPEND, unseen (no flags), received `when`
        (their INTERNALDATE)."""
        stamp = imaplib.Time2Internaldate(when) if when is not None else None
        with self.client() as imap:
            for data in messages:
                typ, answer = imap.append(folder, "", stamp, data)
                assert typ == "OK", answer

    def clear(self, folder: str = "INBOX") -> None:
        """Empty a folder (between tests; the code under test never deletes anything)."""
        with self.client() as imap:
            imap.select(folder)
            _, data = imap.uid("SEARCH", "ALL")
            if data and data[0]:
                imap.uid("STORE", "1:*", "+FLAGS.SILENT", "(\\Deleted)")
                imap.expunge()

    def flags(self, folder: str = "INBOX") -> list[str]:
        """Each message's flags, in UID order (to check nothing was marked \\Seen)."""
        with self.client() as imap:
            imap.select(folder, readonly=True)
            typ, data = imap.uid("FETCH", "1:*", "(FLAGS)")
            assert typ == "OK"
            return [item.decode() for item in data if isinstance(item, bytes)]

    def count(self, folder: str = "INBOX") -> int:
        with self.client() as imap:
            _typ, data = imap.select(folder, readonly=True)
            return int(data[0] or 0)

    def renumber(self) -> None:
        """Forget the UID list and indexes: Dovecot gives the folder a new UIDVALIDITY."""
        for name in os.listdir(self.folder / "mail"):
            if name.startswith(("dovecot-uidlist", "dovecot.index")):
                (self.folder / "mail" / name).unlink()


def _service_users() -> tuple[str, str]:
    """(internal, login) users: Dovecot's own when started as root, else the current one."""
    if os.getuid() == 0:
        return "dovecot", "dovenull"
    user = getpass.getuser()
    return user, user


def _config(folder: Path, ports: tuple[int, int, int], cert: Path, key: Path) -> str:
    internal, login = _service_users()
    imaps, imap, _plain = ports
    return f"""\
protocols = imap
listen = 127.0.0.1
base_dir = {folder}/run
state_dir = {folder}/state
log_path = {folder}/dovecot.log
info_log_path = {folder}/dovecot.log
default_internal_user = {internal}
default_login_user = {login}
ssl = yes
ssl_cert = <{cert}
ssl_key = <{key}
ssl_min_protocol = TLSv1.2
disable_plaintext_auth = yes
auth_mechanisms = plain
mail_location = maildir:{folder}/mail
{_accounts(folder)}service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {imaps}
    ssl = yes
  }}
}}
service stats {{
  chroot =
}}
"""


def _accounts(folder: Path) -> str:
    """The passwd-file user and the unprivileged anvil service, the same in both instances."""
    return f"""\
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%n {folder}/passwd
}}
userdb {{
  driver = passwd-file
  args = username_format=%n {folder}/passwd
}}
service anvil {{
  chroot =
}}
"""


def _plain_config(folder: Path, port: int) -> str:
    """A second instance with TLS off: STARTTLS is not in its capabilities."""
    internal, login = _service_users()
    return f"""\
protocols = imap
listen = 127.0.0.1
base_dir = {folder}/run-plain
state_dir = {folder}/state-plain
log_path = {folder}/dovecot-plain.log
default_internal_user = {internal}
default_login_user = {login}
ssl = no
disable_plaintext_auth = no
mail_location = maildir:{folder}/mail
{_accounts(folder)}service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service stats {{
  chroot =
}}
"""


def _wait_for(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    for _ in range(200):
        if proc.poll() is not None:
            detail = log.read_text(errors="replace") if log.exists() else ""
            raise RuntimeError(f"dovecot exited with {proc.returncode}: {detail}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"dovecot did not listen on port {port}")


@contextmanager
def running_dovecot() -> Iterator[Dovecot]:
    """Start Dovecot (foreground, `-F`) in a temp dir; skip with a hint when it is missing.

    Started as root (containers), Dovecot refuses to run its login processes or touch mail
    as root: they run as its own users and the mail user is `nobody`, so the folder is a
    fresh world-traversable one under the system temp dir rather than pytest's 0700 one.
    """
    if not os.path.exists(DOVECOT):
        pytest.skip("Dovecot is not installed: apt-get install dovecot-imapd")
    folder = Path(tempfile.mkdtemp(prefix="cadence-dovecot-"))
    try:
        with _started(folder) as server:
            yield server
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def _started(folder: Path) -> Iterator[Dovecot]:
    folder.chmod(0o755)
    for sub in ("run", "state", "mail", "run-plain", "state-plain", "home"):
        (folder / sub).mkdir(exist_ok=True)
    uid, gid = os.getuid(), os.getgid()
    home = folder / "home"
    if uid == 0:
        nobody = pwd.getpwnam("nobody")
        uid, gid = nobody.pw_uid, nobody.pw_gid
        for sub in ("mail", "home"):
            os.chown(folder / sub, uid, gid)
    (folder / "passwd").write_text(
        f"{USER}:{{PLAIN}}{PASSWORD}:{uid}:{gid}::{home}::\n", encoding="ascii"
    )
    cert, key = self_signed(folder)
    ports = (free_port(), free_port(), free_port())
    conf = folder / "dovecot.conf"
    conf.write_text(_config(folder, ports, cert, key), encoding="ascii")
    plain_conf = folder / "dovecot-plain.conf"
    plain_conf.write_text(_plain_config(folder, ports[2]), encoding="ascii")
    procs = [
        subprocess.Popen([DOVECOT, "-F", "-c", str(c)], start_new_session=True)
        for c in (conf, plain_conf)
    ]
    try:
        _wait_for(ports[0], procs[0], folder / "dovecot.log")
        _wait_for(ports[1], procs[0], folder / "dovecot.log")
        _wait_for(ports[2], procs[1], folder / "dovecot-plain.log")
        yield Dovecot(folder, ports[0], ports[1], ports[2], cert)
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
