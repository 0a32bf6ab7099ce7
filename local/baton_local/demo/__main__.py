"""``python -m baton_local.demo``: the same as ``baton demo``, flags included."""

import sys

from baton.cli import main

raise SystemExit(main(["demo", *sys.argv[1:]]))
