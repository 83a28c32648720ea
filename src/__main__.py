"""`python -m src ...`: the kit's command line."""

import sys

from src.cli import main

if __name__ == "__main__":
    sys.exit(main())
