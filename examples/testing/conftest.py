"""Makes ``identity.py`` importable by the tests next to it (pytest's ``importlib`` import
mode does not put this directory on ``sys.path``). The fixtures come from the ``vyked``
pytest plugin, which vyked-core installs."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
