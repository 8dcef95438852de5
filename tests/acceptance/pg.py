"""A private PostgreSQL server for fault tests: started, stopped and restarted by the test itself.

Never the machine's shared server: a test that restarts PostgreSQL must own it.
The binaries come from the system's PostgreSQL (`/usr/lib/postgresql/*/bin`),
else from the `pgserver` package's bundled build; with neither, the tests skip.
As root (initdb refuses to run as root) the server runs as the `postgres`
system user, or the `pgserver` user that `pgserver` itself would use.
"""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

_NEEDED = ("initdb", "pg_ctl", "postgres")


def binaries() -> Path | None:
    """A folder with initdb, pg_ctl and postgres, or None."""
    for folder in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if all((folder / name).is_file() for name in _NEEDED):
            return folder
    try:
        import pgserver
    except ImportError:
        return None
    folder = Path(pgserver.__file__).parent / "pginstall" / "bin"
    return folder if all((folder / name).is_file() for name in _NEEDED) else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _system_user() -> str | None:
    """Who runs the server: None (ourselves) unless we are root."""
    if os.geteuid() != 0:
        return None
    import pwd

    try:
        pwd.getpwnam("postgres")
    except KeyError:
        from pgserver.utils import ensure_user_exists

        ensure_user_exists("pgserver")
        return "pgserver"
    return "postgres"


class PrivatePostgres:
    """One PostgreSQL cluster in a temporary folder, on a free port of 127.0.0.1."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.root = Path(tempfile.mkdtemp(prefix="testrun-faults-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self.user = _system_user()
        if self.user is not None:
            shutil.chown(self.root, self.user)
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")
        self._options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1"
        # Should the test session end without its teardown (an interrupt), still
        # leave no server running and no files behind.
        atexit.register(self.destroy)
        self.start()

    @property
    def admin_url(self) -> str:
        """The maintenance database, as superuser."""
        return self.url("postgres")

    def url(self, database: str) -> str:
        """A DSN for `database` on this server."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, program: str, *args: str, **kwargs: Any) -> None:
        subprocess.run(
            [str(self.bin_dir / program), *args],
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
            user=self.user,
            **kwargs,
        )

    def _pg_ctl(self, action: str, *args: str) -> None:
        self._run("pg_ctl", action, "-D", str(self.data), "-w", "-t", "30", *args)

    def stop(self) -> None:
        """Stop fast: sessions are ended, the cluster shuts down cleanly."""
        self._pg_ctl("stop", "-m", "fast")

    def start(self) -> None:
        """Start (again after `stop`), on the same port."""
        self._pg_ctl("start", "-o", self._options, "-l", str(self.root / "log"))

    def restart(self) -> None:
        """`pg_ctl restart -m fast`: every connection is cut, the server comes back."""
        self._pg_ctl("restart", "-m", "fast", "-o", self._options, "-l", str(self.root / "log"))

    def running(self) -> bool:
        """Whether the postmaster is up."""
        status = subprocess.run(
            [str(self.bin_dir / "pg_ctl"), "status", "-D", str(self.data)],
            capture_output=True,
            check=False,
            user=self.user,
        )
        return status.returncode == 0

    def destroy(self) -> None:
        """Stop (if running) and delete every file."""
        if not self.root.exists():
            return
        if self.running():
            try:
                self.stop()
            except subprocess.CalledProcessError:
                self._pg_ctl("stop", "-m", "immediate")
        deadline = time.monotonic() + 10
        while self.running() and time.monotonic() < deadline:
            time.sleep(0.1)
        shutil.rmtree(self.root, ignore_errors=True)
