"""Background jobs launched from the dashboard: ``hwpareto`` commands (``worker``, ``profile``) run as detached
subprocesses, each with a folder holding its command, log and exit code, so a page polls them and never blocks.

Jobs live under ``$HWPARETO_JOBS_DIR`` (default ``${XDG_STATE_HOME:-~/.local/state}/hwpareto/jobs``), in one
sub-folder per store, so they survive a dashboard restart. The store URL (its password included) reaches a job
through its environment (``HWPARETO_STORE``), never its command line or its files; folders are 0700, files 0600.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from hwpareto.store import shown_url

__all__ = ["Job", "jobs_dir", "list_jobs", "start_job"]

# runs the command, then writes its exit code, owner-only (the dashboard reads it; the job outlives the page)
_RUNNER = (
    "import os, subprocess, sys; rc = subprocess.call(sys.argv[2:]); "
    "fd = os.open(sys.argv[1] + '.tmp', os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600); "
    "os.write(fd, str(rc).encode()); os.close(fd); os.replace(sys.argv[1] + '.tmp', sys.argv[1])"
)


_CHILDREN: list[subprocess.Popen[bytes]] = []  # started here: polled so finished ones do not linger as zombies


def jobs_dir(store_url: str) -> Path:
    """This store's job folder, named by a hash of its URL without the password."""
    base = (
        os.environ.get("HWPARETO_JOBS_DIR")
        or Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "hwpareto" / "jobs"
    )
    return Path(base) / hashlib.sha256(shown_url(store_url).encode()).hexdigest()[:12]


def _private(path: Path, text: str) -> None:
    """Write ``text`` to ``path``, readable by its owner only."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)


@dataclass(frozen=True)
class Job:
    """One launched command: its folder, kind (``search``/``profile``), subject and command line."""

    folder: Path
    kind: str
    subject: str
    command: tuple[str, ...]
    pid: int
    started_s: float

    @property
    def exit_code(self) -> int | None:
        """The command's exit code; None while it runs."""
        try:
            return int((self.folder / "rc").read_text())
        except (OSError, ValueError):
            return None

    @property
    def status(self) -> str:
        """``running``, ``done``, ``failed``, or ``lost`` (its process ended without an exit code)."""
        code = self.exit_code
        if code is None:
            try:
                os.kill(self.pid, 0)
                return "running"
            except ProcessLookupError:
                code = self.exit_code  # it may have finished in between
            except PermissionError:
                return "running"
        return "lost" if code is None else "done" if code == 0 else "failed"

    def log_tail(self, lines: int = 20) -> str:
        """The last ``lines`` lines of the command's output."""
        try:
            text = (self.folder / "log").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.replace("\r", "\n").splitlines()[-lines:])


def start_job(store_url: str, kind: str, subject: str, args: Sequence[str]) -> Job:
    """Start ``hwpareto ARGS`` on ``store_url`` detached from this process; returns at once. The URL goes in the
    child's environment (``HWPARETO_STORE``), so no command line (``/proc/PID/cmdline``) or job file holds its
    password; the job's folder is 0700 and its files 0600."""
    store_folder = jobs_dir(store_url)
    store_folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    folder = store_folder / f"{time.strftime('%Y%m%d-%H%M%S')}-{kind}-{os.getpid()}-{time.monotonic_ns()}"
    folder.mkdir(mode=0o700)
    command = (sys.executable, "-m", "hwpareto.cli", *args)
    env = {
        **os.environ,
        "HWPARETO_STORE": store_url,
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
    }
    log = os.open(folder / "log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        process = subprocess.Popen(
            [sys.executable, "-c", _RUNNER, str(folder / "rc"), *command],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
    finally:
        os.close(log)
    _CHILDREN.append(process)
    job = Job(folder, kind, subject, command, process.pid, time.time())
    _private(
        folder / "job.json",
        json.dumps(
            {"kind": kind, "subject": subject, "command": list(command), "pid": process.pid, "started_s": job.started_s}
        ),
    )
    return job


def list_jobs(store_url: str, kind: str | None = None) -> list[Job]:
    """This store's jobs (of ``kind``), newest first."""
    _CHILDREN[:] = [p for p in _CHILDREN if p.poll() is None]
    out = []
    folder = jobs_dir(store_url)
    for meta in sorted(folder.glob("*/job.json"), reverse=True) if folder.is_dir() else []:
        try:
            doc = json.loads(meta.read_text())
        except (OSError, ValueError):
            continue
        if kind is None or doc["kind"] == kind:
            out.append(
                Job(
                    meta.parent,
                    doc["kind"],
                    doc["subject"],
                    tuple(doc["command"]),
                    int(doc["pid"]),
                    float(doc["started_s"]),
                )
            )
    return sorted(out, key=lambda j: j.started_s, reverse=True)
