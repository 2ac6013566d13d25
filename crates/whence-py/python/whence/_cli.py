"""The ``whence`` command: the same command line as the cargo-built binary
(``whence_cli::run``), run in this process."""

import signal
import sys


def main() -> None:
    from . import _whence

    # Ctrl-C ends the process as it ends the binary; every output is written
    # to a temporary file and renamed, so nothing is left half-written.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    sys.exit(_whence.cli(["whence", *sys.argv[1:]]))


if __name__ == "__main__":
    main()
