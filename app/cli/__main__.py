"""`python -m app.cli`: the `ec2-terminal` command."""

from __future__ import annotations

import sys

from app.cli.main import main

if __name__ == "__main__":  # importing this module (a walk over app/) runs nothing
    sys.exit(main())
