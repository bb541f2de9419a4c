import sys

from vyked.registry.cli import main

sys.exit(main())
