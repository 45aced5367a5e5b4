"""How much memory this process may still allocate, and the one check that refuses a model before it is built."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from hwpareto.errors import InvalidValueError

__all__ = ["available_memory_bytes", "check_memory"]


def available_memory_bytes() -> int | None:
    """Memory this process may still allocate: the kernel's MemAvailable, lowered to the room left under a cgroup
    (v2 or v1) memory limit; None where neither can be read (not Linux)."""
    figures: list[int] = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                figures.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    for limit, usage in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"),
    ):
        try:
            cap, used = Path(limit).read_text().strip(), Path(usage).read_text().strip()
        except OSError:
            continue
        if cap.isdigit() and used.isdigit() and int(cap) < 2**60:
            figures.append(max(0, int(cap) - int(used)))
    if not figures and hasattr(os, "sysconf"):
        with contextlib.suppress(ValueError, OSError):
            figures.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    return min(figures) if figures else None


def check_memory(what: str, params: int, bytes_per_param: int = 4, counted: str = "parameters") -> None:
    """Refuse, before anything is allocated, a model of ``params`` parameters (fp32 unless ``bytes_per_param``;
    ``counted`` names what is counted where it is more than parameters) that does not fit the memory this machine
    has available: an InvalidValueError with both figures."""
    need = params * bytes_per_param
    have = available_memory_bytes()
    if have is not None and need > have:
        raise InvalidValueError(
            f"{what} memory",
            f"at most this machine's {have / 1e9:,.1f} GB available",
            f"{need / 1e9:,.1f} GB ({params:,} {counted} × {bytes_per_param} bytes)",
        )
