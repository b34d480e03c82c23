"""Helpers shared by the built-in rule types."""

from __future__ import annotations

from collections.abc import Sequence

from rules.api import CompileContext
from rules.model import RuleSpec


def entries(
    context: CompileContext,
    rule: RuleSpec,
    inline: Sequence[str],
    files: str | Sequence[str] | None,
    name: str,
) -> list[str]:
    """The entries written in the rule plus those of its list file(s) (parameter ``name``)."""
    out = list(inline)
    refs = [files] if isinstance(files, str) else list(files or ())
    for k, ref in enumerate(refs):
        loc: tuple[str | int, ...] = (name,) if isinstance(files, str) else (name, k)
        out.extend(context.read_list(rule, ref, *loc))
    return out
