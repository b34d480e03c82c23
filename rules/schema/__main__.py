"""``python -m rules.schema [--write]``: print (or write) the JSON Schema of rule files."""

from __future__ import annotations

import sys

from rules.schema import SCHEMA_PATH, render

if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        SCHEMA_PATH.write_text(render(), encoding="utf-8")
        print(f"wrote {SCHEMA_PATH}")
    else:
        sys.stdout.write(render())
