from __future__ import annotations

from tracker.cli import main

main()
