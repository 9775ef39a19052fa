"""Where the browser tests and benchmarks find Chromium, and how they start it.

Debian's Chromium, run as root in a container (see the shared ENVIRONMENT.md, pitfall 9):
``ECODE_CHROMIUM`` points elsewhere.
"""

from __future__ import annotations

import os
from pathlib import Path

CHROMIUM = Path(os.environ.get("ECODE_CHROMIUM", "/usr/lib/chromium/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
