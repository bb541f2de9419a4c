"""``python -m vyked.core.cli``: the ``vyked`` command."""

from vyked.core.cli.app import main

main()
