"""``python -m whence``: the ``whence`` command line."""

from ._cli import main

main()
