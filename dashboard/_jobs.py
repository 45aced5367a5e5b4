"""Background jobs launched from the dashboard: ``hwpareto`` commands (``worker``, ``profile``) run as detached
subprocesses, each with a folder holding its command, log and exit code, so a page polls them and never blocks.

Jobs live under ``$HWPARETO_JOBS_DIR`` (default ``${XDG_STATE_HOME:-~/.local/state}/hwpareto/jobs``), in one
sub-folder per store, so they survive a dashboard restart.
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

__all__ = ["Job", "jobs_dir", "list_jobs", "start_job"]

# runs the command, then writes its exit code (the dashboard reads it; the job outlives the page)
_RUNNER = (
    "import os, subprocess, sys; rc = subprocess.call(sys.argv[2:]); "
    "open(sys.argv[1] + '.tmp', 'w').write(str(rc)); os.replace(sys.argv[1] + '.tmp', sys.argv[1])"
)


_CHILDREN: list[subprocess.Popen[bytes]] = []  # started here: polled so finished ones do not linger as zombies


def jobs_dir(store_url: str) -> Path:
    """This store's job folder."""
    base = (
        os.environ.get("HWPARETO_JOBS_DIR")
        or Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "hwpareto" / "jobs"
    )
    return Path(base) / hashlib.sha256(store_url.encode()).hexdigest()[:12]


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
    """Start ``hwpareto ARGS --store URL`` detached from this process; returns at once."""
    folder = jobs_dir(store_url) / f"{time.strftime('%Y%m%d-%H%M%S')}-{kind}-{os.getpid()}-{time.monotonic_ns()}"
    folder.mkdir(parents=True)
    command = (sys.executable, "-m", "hwpareto.cli", *args, "--store", store_url)
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    with open(folder / "log", "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-c", _RUNNER, str(folder / "rc"), *command],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
    _CHILDREN.append(process)
    job = Job(folder, kind, subject, command, process.pid, time.time())
    (folder / "job.json").write_text(
        json.dumps(
            {"kind": kind, "subject": subject, "command": list(command), "pid": process.pid, "started_s": job.started_s}
        )
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
