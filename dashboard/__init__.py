"""The hwpareto dashboard: a Streamlit app (``dashboard/app.py``) over the store; :func:`serve` runs it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

__all__ = ["APP", "serve", "streamlit_command"]

APP = Path(__file__).with_name("app.py")


def streamlit_command(host: str = "127.0.0.1", port: int = 8501, open_browser: bool = True) -> list[str]:
    """The ``python -m streamlit run`` command line for the dashboard (headless unless ``open_browser``). An
    unexpected exception shows no traceback in the browser (``client.showErrorDetails none``); user errors are the
    CLI's one line (``error: ...``)."""
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(APP),
        "--server.address",
        host,
        "--server.port",
        str(port),
        "--server.headless",
        "false" if open_browser else "true",
        "--browser.gatherUsageStats",
        "false",
        "--server.fileWatcherType",
        "none",
        "--client.toolbarMode",
        "minimal",
        "--client.showErrorDetails",
        "none",
    ]


def serve(store_url: str, host: str = "127.0.0.1", port: int = 8501, open_browser: bool = True) -> int:
    """Run the dashboard on ``store_url`` until interrupted (blocking); returns Streamlit's exit code. Ctrl-C or
    SIGTERM stops the server too (no orphaned Streamlit process keeps the port)."""
    env = {**os.environ, "HWPARETO_STORE": store_url}
    process = subprocess.Popen(streamlit_command(host, port, open_browser), env=env)
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, lambda *_: process.terminate()) if main else None
    try:
        return process.wait()
    except KeyboardInterrupt:
        process.terminate()
        return process.wait()
    finally:
        if main:
            signal.signal(signal.SIGTERM, previous)
