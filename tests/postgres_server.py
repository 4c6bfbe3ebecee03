"""A throw-away PostgreSQL server for the gradebook tests: Debian's ``postgresql`` package
(scripts/system-deps.sh installs it), a data directory in a temporary folder, run as an
unprivileged user (``postgres`` when the tests run as root), reachable only through a Unix
socket in that folder (no TCP port), stopped and deleted afterwards.

    with PostgresServer() as server:
        db_url = server.create_database("gradebook")
"""
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time


def postgres_bin():
    """The folder holding initdb and pg_ctl (Debian keeps them off PATH), or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    if found:
        return os.path.dirname(found[-1])
    initdb = shutil.which("initdb")
    return os.path.dirname(os.path.realpath(initdb)) if initdb else None


class PostgresUnavailable(RuntimeError):
    """The server cannot start here (why is in the message)."""


class PostgresServer:
    """Start with ``with``; ``create_database(name)`` gives a SQLAlchemy URL."""

    def __init__(self, user="grader"):
        self.user = user
        self.bin = postgres_bin()
        self.folder = None

    def _as_owner(self):
        if os.getuid() != 0:
            return []
        try:
            pwd.getpwnam("postgres")
        except KeyError as exc:
            raise PostgresUnavailable("running as root and there is no 'postgres' user to run "
                                      "the server as (install the Debian package postgresql)") from exc
        return ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--"]

    def _run(self, *argv, timeout=120):
        return subprocess.run([*self._as_owner(), *argv], capture_output=True, text=True,
                              timeout=timeout, cwd=self.folder)

    def __enter__(self):
        if self.bin is None:
            raise PostgresUnavailable("initdb not found (install the Debian package postgresql)")
        self.folder = tempfile.mkdtemp(prefix="pg-gradebook-")
        if os.getuid() == 0:
            entry = pwd.getpwnam("postgres") if self._as_owner() else None
            os.chown(self.folder, entry.pw_uid, entry.pw_gid)
        os.chmod(self.folder, 0o711)
        self.data = os.path.join(self.folder, "data")
        init = self._run(os.path.join(self.bin, "initdb"), "-D", self.data, "-U", self.user,
                         "--auth=trust", "--no-sync", "-E", "UTF8")
        if init.returncode != 0:
            self.__exit__(None, None, None)
            raise PostgresUnavailable(f"initdb failed: {init.stderr[-800:]}")
        options = (f"-c listen_addresses='' -c unix_socket_directories='{self.folder}' "
                   "-c fsync=off -c max_connections=60")
        start = self._run(os.path.join(self.bin, "pg_ctl"), "-D", self.data, "-o", options,
                          "-l", os.path.join(self.folder, "server.log"), "-w", "-t", "60", "start")
        if start.returncode != 0:
            log = ""
            if os.path.exists(os.path.join(self.folder, "server.log")):
                log = open(os.path.join(self.folder, "server.log")).read()[-800:]
            self.__exit__(None, None, None)
            raise PostgresUnavailable(f"pg_ctl start failed: {start.stderr[-400:]} {log}")
        return self

    def url(self, database):
        """The SQLAlchemy URL of ``database`` on this server (psycopg2, over the socket)."""
        return f"postgresql+psycopg2://{self.user}@/{database}?host={self.folder}"

    def create_database(self, name):
        """Create ``name`` and return its URL."""
        import sqlalchemy
        engine = sqlalchemy.create_engine(self.url("postgres"), isolation_level="AUTOCOMMIT")
        with engine.connect() as con:
            con.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
        engine.dispose()
        return self.url(name)

    def __exit__(self, *exc):
        if self.folder is None:
            return
        if os.path.exists(os.path.join(self.data, "postmaster.pid")):
            self._run(os.path.join(self.bin, "pg_ctl"), "-D", self.data, "-m", "immediate",
                      "-w", "-t", "30", "stop")
        for _ in range(50):  # the server may still be shutting down
            try:
                shutil.rmtree(self.folder)
                break
            except OSError:
                time.sleep(0.1)
        self.folder = None
