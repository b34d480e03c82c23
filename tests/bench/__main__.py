"""``python -m tests.bench [NAME ...]``: run every benchmark module (or the named ones), print one table."""

from __future__ import annotations

import importlib
import pkgutil
import sys
import time

from tests.bench import Row, format_table
from worker.logs import configure_logging


def main(names: list[str]) -> int:
    package = sys.modules["tests.bench"]
    modules = sorted(m.name for m in pkgutil.iter_modules(package.__path__) if m.name.startswith("bench_"))
    if names:
        modules = [m for m in modules if any(n in m for n in names)]
    configure_logging("console", "warning")  # the worker's per-job lines would bury the table
    rows: list[Row] = []
    for name in modules:
        started = time.perf_counter()
        print(f"running {name} ...", file=sys.stderr, flush=True)
        rows.extend(importlib.import_module(f"tests.bench.{name}").run())
        print(f"  {name} took {time.perf_counter() - started:.1f}s", file=sys.stderr, flush=True)
    print(format_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
