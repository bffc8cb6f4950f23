"""The process ``ser-live web`` becomes: Streamlit's command line, with a Ctrl-C that
comes before its server is up ending the process quietly instead of in a traceback.

``ser_live.web`` execs this module with SIGINT blocked (a signal mask survives exec),
so a Ctrl-C during the interpreter's start waits; it is unblocked only inside the
``try`` below, where it ends the start with exit status 130. The banner (the address,
"Ctrl-C stops it") is printed there too, after the unblock: from then on, a Ctrl-C
stops the command. Printed before the exec, a Ctrl-C that followed it within a
millisecond could be taken by another thread of the launching process, which the mask
does not cover, and be lost in the exec. Once Streamlit's server runs, Ctrl-C is
Streamlit's own.
"""

from __future__ import annotations

import os
import signal
import sys

#: The line ``ser_live.web`` asks this process to print once Ctrl-C stops it.
BANNER_ENV = "SER_LIVE_WEB_BANNER"


def main() -> int:
    try:
        if hasattr(signal, "pthread_sigmask"):  # POSIX; Windows has no signal masks
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
        banner = os.environ.pop(BANNER_ENV, "")
        if banner:
            print(banner, file=sys.stderr, flush=True)
        from streamlit.web import cli

        cli.main(prog_name="streamlit")  # click: ends in SystemExit with Streamlit's status
    except KeyboardInterrupt:
        print("ser-live web: stopped", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
