"""Engine throughput only: ``scripts/bench.py --suite engine`` (the other options pass through).

python scripts/bench_engine.py [--device auto|cpu|cuda] [--quick] [--out DIR]
"""

from __future__ import annotations

import sys

from bench import main

if __name__ == "__main__":
    sys.exit(main(["--suite", "engine", *sys.argv[1:]]))
