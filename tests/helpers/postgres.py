"""A throw-away PostgreSQL for the tests, and a fresh database per test.

`CADENCE_TEST_POSTGRES` (a DSN whose user may CREATE DATABASE) names a server to use;
without it a cluster is made with the PostgreSQL binaries found on this machine: initdb
into a temporary folder, listening on 127.0.0.1 on a free port with its unix socket in
that folder (as the `postgres` user when the tests run as root), stopped at the end.
Without either, the PostgreSQL tests are skipped with a message saying how to run them.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

SKIP = (
    "PostgreSQL tests need PostgreSQL server binaries (Debian: apt-get install postgresql, "
    "then they are found in /usr/lib/postgresql/*/bin) or CADENCE_TEST_POSTGRES=postgresql://"
    "user@host:port/db naming a server where that user may create databases"
)
TEMPLATE = "cadence_template"


def _bindir() -> Path | None:
    for initdb in sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True):
        return Path(initdb).parent
    found = shutil.which("initdb")
    return Path(found).parent if found else None


def _free_port() -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Cluster:
    """A PostgreSQL cluster made for this test run."""

    def __init__(
        self,
        bindir: Path,
        *,
        listen: str = "127.0.0.1",
        netns: str | None = None,
        trust: str | None = None,
    ) -> None:
        """`listen`: addresses; `netns`: run in that network namespace; `trust`: a CIDR
        whose clients connect without a password (besides the local ones)."""
        self.bindir = bindir
        self.dir = Path(tempfile.mkdtemp(prefix="cadence-pg-"))
        self.data = self.dir / "data"
        self.port = _free_port()
        self.listen = listen
        self.trust = trust
        self._as: list[str] = ["ip", "netns", "exec", netns] if netns else []
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
            self._as += ["runuser", "-u", "postgres", "--"]
        self.user = "postgres" if os.geteuid() == 0 else None

    def _run(self, *args: str) -> None:
        subprocess.run([*self._as, *args], check=True, capture_output=True, text=True, cwd=self.dir)

    def start(self) -> None:
        self._run(
            str(self.bindir / "initdb"),
            "-D",
            str(self.data),
            "--auth=trust",
            "--username=postgres",
            "--encoding=UTF8",
            "--no-sync",
        )
        if self.trust:
            with (self.data / "pg_hba.conf").open("a", encoding="utf-8") as hba:
                hba.write(f"host all all {self.trust} trust\n")
        self._postmaster()

    def _postmaster(self) -> None:
        options = (
            f"-c listen_addresses={self.listen} -c port={self.port} "
            f"-c unix_socket_directories={self.dir} -c fsync=off "
            "-c max_connections=200 -c synchronous_commit=on"
        )
        # -l: the server's output goes to a file, never to the pipes this process reads.
        self._run(
            str(self.bindir / "pg_ctl"),
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.dir / "log"),
            "-w",
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def start_again(self) -> None:
        """Start the stopped server on its data and port (after `stop`)."""
        self._postmaster()

    def restart(self) -> None:
        """Stop at once (every connection cut, no shutdown checkpoint) and start again."""
        self.stop("immediate")
        self._postmaster()

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"


class Server:
    """Where test databases are made: a cluster of our own or CADENCE_TEST_POSTGRES."""

    def __init__(self, admin_dsn: str, cluster: Cluster | None) -> None:
        self.admin_dsn = admin_dsn
        self.cluster = cluster
        self._template = False

    def _admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            conn.execute(sql.encode())

    def dsn_for(self, name: str) -> str:
        """The URL of database `name` on this server (a postgresql:// URL, as CADENCE_DB)."""
        from urllib.parse import urlsplit, urlunsplit

        parts = urlsplit(self.admin_dsn)
        if parts.scheme not in ("postgresql", "postgres"):
            pytest.fail("CADENCE_TEST_POSTGRES must be a postgresql://user@host:port/db URL")
        return urlunsplit(parts._replace(path="/" + name))

    def database(self) -> str:
        """A new, migrated, empty database: its DSN."""
        from cadence_engine.engine.store.postgres import PostgresStore

        if not self._template:
            self._admin(f"DROP DATABASE IF EXISTS {TEMPLATE}")
            self._admin(f"CREATE DATABASE {TEMPLATE}")
            PostgresStore(self.dsn_for(TEMPLATE)).close()
            self._template = True
        name = "cadence_" + uuid.uuid4().hex[:12]
        self._admin(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
        return self.dsn_for(name)

    def drop(self, dsn: str) -> None:
        from urllib.parse import urlsplit

        name = urlsplit(dsn).path.lstrip("/")
        self._admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def postgres_server() -> Iterator[Server]:
    """The session's server (a generator for a session fixture)."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("PostgreSQL tests need psycopg: pip install 'cadence-engine[postgres]'")
    given = os.environ.get("CADENCE_TEST_POSTGRES")
    if given:
        yield Server(given, None)
        return
    bindir = _bindir()
    if bindir is None:
        pytest.skip(SKIP)
    cluster = Cluster(bindir)
    try:
        cluster.start()
    except subprocess.CalledProcessError as exc:
        cluster.remove()
        pytest.fail(f"could not start a PostgreSQL cluster: {exc.stderr or exc.stdout}")
    try:
        yield Server(cluster.dsn, cluster)
    finally:
        cluster.stop()
        cluster.remove()
