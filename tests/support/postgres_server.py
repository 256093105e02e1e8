"""A throwaway PostgreSQL cluster: `initdb` in a temporary directory, one server on a free
loopback port, dropped afterwards.

PostgreSQL refuses to run as root, so as root the cluster belongs to the `postgres` user of
Debian's package (or `nobody`), and the directory lives in /tmp rather than in pytest's
root-only temporary directory. Loopback TCP connections authenticate with a SCRAM password, as
a deployment's do, so tests can show that a DSN's password never appears. Durability is off
(`fsync=off`): the tests kill servers, not machines.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import psycopg

from tests.support.registry_server import free_port

SUPERUSER = "acceld_admin"
SUPERUSER_PASSWORD = "admin-secret-" + uuid.uuid4().hex[:8]


def _bindir() -> Path:
    """The newest installed PostgreSQL's binaries (Debian keeps them out of PATH)."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4])
    )
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb is None:
        raise RuntimeError("PostgreSQL is not installed (Debian: apt-get install postgresql)")
    return Path(initdb).resolve().parent


def _server_user() -> pwd.struct_passwd | None:
    """Whom to run the server as: None for this user, unless this user is root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise RuntimeError("running as root and neither a postgres nor a nobody user exists")


@dataclass
class RunningPostgres:
    root: Path
    port: int
    process: subprocess.Popen[bytes]
    user: pwd.struct_passwd | None
    bindir: Path

    def dsn(
        self,
        dbname: str = "postgres",
        user: str = SUPERUSER,
        password: str = SUPERUSER_PASSWORD,
        **extra: str,
    ) -> str:
        """A key=value connection string over loopback TCP, where passwords are checked."""
        params = {
            "host": "127.0.0.1",
            "port": str(self.port),
            "dbname": dbname,
            "user": user,
            "password": password,
        }
        params.update(extra)
        return " ".join(f"{key}={value}" for key, value in params.items())

    def execute(self, sql: str, dbname: str = "postgres") -> None:
        """Run `sql` as the superuser outside a transaction (CREATE DATABASE, roles, ...)."""
        with psycopg.connect(self.dsn(dbname), autocommit=True) as conn:
            conn.execute(sql.encode())

    def create_database(self, prefix: str = "acceld") -> str:
        """A new empty database; its name."""
        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        self.execute(f'CREATE DATABASE "{name}"')
        return name

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # fast shutdown
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        shutil.rmtree(self.root, ignore_errors=True)

    def restart(self, down_seconds: float = 0.0) -> None:
        """Stop the server (fast shutdown: sessions are cut), leave it down `down_seconds`, and
        start it again on its port."""
        self.process.send_signal(signal.SIGINT)
        self.process.wait(timeout=30)
        time.sleep(down_seconds)
        self.process = _start_server(self.root, self.port, self.user, self.bindir)


def _run_as(user: pwd.struct_passwd | None) -> dict[str, object]:
    if user is None:
        return {}
    return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}


def _start_server(
    root: Path, port: int, user: pwd.struct_passwd | None, bindir: Path
) -> subprocess.Popen[bytes]:
    log = (root / "server.log").open("ab")
    process = subprocess.Popen(
        [
            str(bindir / "postgres"),
            "-D",
            str(root / "data"),
            "-p",
            str(port),
            "-k",
            str(root),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
            "-c",
            "max_connections=200",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=root,
        **_run_as(user),  # type: ignore[arg-type]
    )
    log.close()
    deadline = time.monotonic() + 30
    dsn = (
        f"host=127.0.0.1 port={port} dbname=postgres user={SUPERUSER} "
        f"password={SUPERUSER_PASSWORD} connect_timeout=2"
    )
    while True:
        try:
            psycopg.connect(dsn).close()
            return process
        except psycopg.OperationalError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                tail = (root / "server.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"PostgreSQL did not start on port {port}:\n{tail}") from None
            time.sleep(0.05)


def start_postgres() -> RunningPostgres:
    """A new cluster with superuser `acceld_admin`; TCP connections need a password (SCRAM)."""
    bindir = _bindir()
    user = _server_user()
    root = Path(tempfile.mkdtemp(prefix="acceld-postgres-"))
    if user is not None:
        os.chown(root, user.pw_uid, user.pw_gid)
    password_file = root / "superuser-password"
    password_file.write_text(SUPERUSER_PASSWORD + "\n")
    if user is not None:
        os.chown(password_file, user.pw_uid, user.pw_gid)
    try:
        subprocess.run(
            [
                str(bindir / "initdb"),
                "-D",
                str(root / "data"),
                "-U",
                SUPERUSER,
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                f"--pwfile={password_file}",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ],
            check=True,
            capture_output=True,
            cwd=root,
            **_run_as(user),  # type: ignore[arg-type]
        )
        port = free_port()
        process = _start_server(root, port, user, bindir)
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    return RunningPostgres(root, port, process, user, bindir)
