"""`python -m server`: see server/app.py."""

import sys

from .app import main

sys.exit(main())
