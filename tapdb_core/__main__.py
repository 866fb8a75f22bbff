import sys

from tapdb_core.cli.main import main

sys.exit(main())
