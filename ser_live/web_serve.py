"""The process ``ser-live web`` becomes: Streamlit's command line, with a Ctrl-C that
comes before its server is up ending the process quietly instead of in a traceback.

``ser_live.web`` execs this module with SIGINT blocked (a signal mask survives exec),
so a Ctrl-C during the interpreter's start waits. ``main`` then installs a handler that
ends the process at once with exit status 130 and one line, and unblocks SIGINT. The
banner (the address, "Ctrl-C stops it") is printed after that: from then on, a Ctrl-C
stops the command. Printed before the exec, a Ctrl-C that followed it within a
millisecond could be taken by another thread of the launching process, which the mask
does not cover, and be lost in the exec.

The handler exits without unwinding (``os._exit``) because an exception raised into
Streamlit's start (its asyncio bootstrap, uvicorn's startup) is logged by asyncio as a
traceback of tasks it cancels; before the server is up there is nothing to save. Once
Streamlit's server runs, Streamlit installs its own SIGINT handler, which stops the
server gracefully: from then on Ctrl-C is Streamlit's.
"""

from __future__ import annotations

import os
import signal
import sys

#: The line ``ser_live.web`` asks this process to print once Ctrl-C stops it.
BANNER_ENV = "SER_LIVE_WEB_BANNER"
#: The exit status of a start ended by Ctrl-C (128 + SIGINT, as a shell reports it).
INTERRUPTED = 130


def _stop_the_start(signum: int, frame: object) -> None:
    os.write(2, b"ser-live web: stopped\n")
    os._exit(INTERRUPTED)


def main() -> int:
    signal.signal(signal.SIGINT, _stop_the_start)
    if hasattr(signal, "pthread_sigmask"):  # POSIX; Windows has no signal masks
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    banner = os.environ.pop(BANNER_ENV, "")
    if banner:
        print(banner, file=sys.stderr, flush=True)
    from ser_live import one_blas_thread

    one_blas_thread()  # as the command line does, before Streamlit loads NumPy
    from streamlit.web import cli

    cli.main(prog_name="streamlit")  # click: ends in SystemExit with Streamlit's status
    return 0


if __name__ == "__main__":
    sys.exit(main())
