"""``python -m durably``: the command line (see ``durably --help``)."""

from ._cli import main

main()
