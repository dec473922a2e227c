"""``python -m morph``: the ``morph`` command, for environments (a notebook's ``!`` line) without its script."""

from morph.cli import main

main()
