"""`python -m mnistbench`."""
import sys

from .cli import main

sys.exit(main())
