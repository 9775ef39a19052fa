"""The app-building eval as a benchmark script: ``jupyter ecode eval`` by another name.

    python benchmarks/eval/run.py [--provider offline] [--specs ID ...] [--report PATH]

The harness and the specs live in the package (``ecode_jupyter/evals/``), so an installed
suite runs them too; see that module for what is measured.
"""

from __future__ import annotations

import sys

from ecode_jupyter.evals.harness import main

if __name__ == "__main__":
    sys.exit(main())
