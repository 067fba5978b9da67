"""Command line of the dev cluster: ``python -m devcluster build|up|down|demo``."""

from __future__ import annotations

import sys

from devcluster import cli

if __name__ == "__main__":
    sys.exit(cli.main(sys.argv[1:]))
