"""``ser-live web``: serve the web page (``ser_live.web_app``) with Streamlit.

The command becomes Streamlit's ``run`` (through ``ser_live.web_serve``; exec: on POSIX
the same process, so Ctrl-C, SIGTERM from a service manager and the exit status are
Streamlit's own, and no server is left behind), its settings given on its command line
so that no user or project Streamlit config can loosen them: the address and port, the
upload limit, no file watcher, no usage statistics, no browser opened.
"""

from __future__ import annotations

import ipaddress
import os
import signal
import subprocess
import sys
from pathlib import Path

from ser_live.errors import SerLiveError
from ser_live.uploads import MAX_UPLOAD_ENV
from ser_live.web_serve import BANNER_ENV


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def streamlit_command(host: str, port: int, max_upload_mb: int) -> list[str]:
    app = Path(__file__).with_name("web_app.py")
    return [
        sys.executable,
        "-m",
        "ser_live.web_serve",  # ``streamlit``'s own command line (that module says why)
        "run",
        str(app),
        "--server.address",
        host,
        "--server.port",
        str(port),
        "--server.maxUploadSize",
        str(max_upload_mb),
        "--server.headless",
        "true",
        "--server.fileWatcherType",
        "none",
        "--server.runOnSave",
        "false",
        "--browser.gatherUsageStats",
        "false",
        "--global.developmentMode",
        "false",
        "--client.toolbarMode",
        "minimal",
        "--client.showErrorDetails",
        "none",
    ]


def serve(host: str, port: int, max_upload_mb: int) -> int:
    """Run the page until Ctrl-C; Streamlit's exit status."""
    try:
        import streamlit  # noqa: F401 - only to tell the user what is missing
    except ImportError:
        raise SerLiveError(
            "the web page needs the web extra: pip install 'ser-live[web]'"
        ) from None
    if not 1 <= port <= 65535:
        raise SerLiveError(f"--port must be 1-65535, not {port}")
    if max_upload_mb < 1:
        raise SerLiveError("--max-upload-mb must be at least 1")
    if not is_loopback(host):
        print(
            f"ser-live web: warning: listening on {host}: anyone who can reach this computer "
            "on the network can upload recordings to it",
            file=sys.stderr,
            flush=True,
        )
    banner = f"ser-live web: http://{host}:{port} (Ctrl-C stops it)"
    env = {**os.environ, MAX_UPLOAD_ENV: str(max_upload_mb)}
    command = streamlit_command(host, port, max_upload_mb)
    if os.name == "posix":
        # Blocked from here until web_serve has its handler, across the exec: a Ctrl-C
        # waits in the kernel for the server's process, which prints the banner once it
        # can be stopped (web_serve says why there).
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        os.execve(command[0], command, {**env, BANNER_ENV: banner})  # does not return
    print(banner, file=sys.stderr, flush=True)
    try:  # Windows: exec would detach the server from the console; wait for it instead
        return subprocess.run(command, env=env).returncode
    except KeyboardInterrupt:
        return 130
