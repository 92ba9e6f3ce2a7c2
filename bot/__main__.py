"""``python -m bot``: see bot.cli."""

from __future__ import annotations

import sys

from bot.cli import main

# Spawned training workers import this module as __mp_main__: they must not run the CLI.
if __name__ == "__main__":
    sys.exit(main())
