"""`python -m services.venue`: see cli.py."""
import sys

from .cli import main

sys.exit(main())
