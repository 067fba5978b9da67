"""Command line of the dev cluster: ``python -m devcluster build|up|down|demo``."""

from __future__ import annotations

import sys

import devcluster.cli

if __name__ == "__main__":
    sys.exit(devcluster.cli.main(sys.argv[1:]))
