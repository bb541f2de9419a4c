"""The ``vyked`` command (``pip install 'vyked-core[cli]'``): ``run``, ``call``, ``publish``,
``status`` and ``schema``. See ``docs/cli.md``.

:mod:`vyked.core.cli.app` holds the entry point; each command has its module; nothing here
imports typer or rich until the command runs, so that ``vyked`` without the extra can say
what to install.
"""
