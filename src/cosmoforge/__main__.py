import sys

from cosmoforge.cli import main

sys.exit(main())
