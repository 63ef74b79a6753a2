"""`python -m hack.localcluster`: the `hack/cluster` command."""

from __future__ import annotations

import sys

from hack.localcluster.cli import main

sys.exit(main())
