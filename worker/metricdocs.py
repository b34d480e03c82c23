"""The README's tables of metrics, generated from the registries that define them (tests compare)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry


def metrics_table_of(registry: CollectorRegistry) -> str:
    """A Markdown table of the metrics in ``registry``: name (counters with ``_total``) and meaning."""
    lines = ["| metric | meaning |", "|---|---|"]
    for metric in registry.collect():
        name = metric.name + ("_total" if metric.type == "counter" else "")
        lines.append(f"| `{name}` | {metric.documentation} |")
    return "\n".join(lines)
