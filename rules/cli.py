"""``recall-worker rules check|eval``: validate a rule file, and try it on messages before it ships.

``check FILE`` loads and compiles every rule set, printing each problem as ``file:line: message`` (exit 1)
or a summary (exit 0). ``eval FILE [--ruleset NAME] [MESSAGES]`` reads messages in the Chat API's JSON
shape (one object, a list, a history reply, or JSON lines; from MESSAGES or stdin) and prints one JSON line
per match. Exit status: 0 done, 1 the rule file is broken, 2 the messages or the rule set name are.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rules.config import load_file
from rules.errors import RulesError
from rules.messages import MessagesError, parse_messages
from rules.model import Match


def add_rules_commands(subparsers: Any) -> None:
    """Add ``rules check`` and ``rules eval`` to an ``argparse`` sub-parsers object."""
    parser = subparsers.add_parser(
        "rules", help="check rule files and try them on messages", description=__doc__
    )
    commands = parser.add_subparsers(dest="rules_command", required=True, metavar="{check,eval}")

    check = commands.add_parser("check", help="validate and compile a rule file; report problems with lines")
    check.add_argument("file", type=Path, help="rule file (YAML or TOML)")
    check.set_defaults(func=check_command)

    evaluate = commands.add_parser(
        "eval",
        help="print the matches of a rule set on messages, one JSON line each",
        usage="%(prog)s FILE [--ruleset NAME] [MESSAGES]",
        epilog="MESSAGES: a file of messages in the Chat API's JSON shape; stdin when absent or '-'.",
    )
    evaluate.add_argument("file", type=Path, help="rule file (YAML or TOML)")
    evaluate.add_argument("--ruleset", default="default", help="rule set to run (default: %(default)s)")
    # argparse cannot take a positional after an option that follows another positional (FILE --ruleset X
    # MESSAGES): the rest of the line is parsed by _rest() instead.
    evaluate.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    evaluate.set_defaults(func=eval_command)


def _rest(args: argparse.Namespace) -> tuple[str, str]:
    """``(ruleset, messages)`` of ``rules eval``, from the options and what follows FILE."""
    parser = argparse.ArgumentParser(prog="recall-worker rules eval FILE", add_help=False)
    parser.add_argument("--ruleset", default=None)
    parser.add_argument("messages", nargs="?", default="-")
    rest = parser.parse_args(args.rest)
    return rest.ruleset or args.ruleset, rest.messages


def _report(exc: RulesError) -> None:
    for problem in exc.problems:
        print(problem, file=sys.stderr)
    count = len(exc.problems)
    print(f"{count} problem{'s' if count != 1 else ''}", file=sys.stderr)


def check_command(args: argparse.Namespace) -> int:
    """``rules check FILE``."""
    try:
        book = load_file(args.file)
    except RulesError as exc:
        _report(exc)
        return 1
    print(f"{args.file}: OK (version {book.version[:12]})")
    for name, ruleset in book.rulesets.items():
        kinds = Counter(rule.type for rule in ruleset.rules)
        detail = ", ".join(f"{kind} {n}" for kind, n in kinds.items()) or "none"
        plural = "" if len(ruleset.rules) == 1 else "s"
        print(f"  {name}: {len(ruleset.rules)} rule{plural} ({detail})")
    return 0


def _print(match: Match, ascii_only: bool) -> None:
    print(json.dumps(match.to_dict(), ensure_ascii=ascii_only), flush=False)


def eval_command(args: argparse.Namespace) -> int:
    """``rules eval FILE [--ruleset NAME] [MESSAGES]``."""
    name, messages_path = _rest(args)
    try:
        book = load_file(args.file)
    except RulesError as exc:
        _report(exc)
        return 1
    try:
        ruleset = book.get(name)
    except RulesError as exc:
        _report(exc)
        return 2
    try:
        if messages_path == "-":
            text, source = sys.stdin.read(), "<stdin>"
        else:
            text, source = Path(messages_path).read_text(encoding="utf-8-sig"), messages_path
        messages = parse_messages(text, source)
    except (OSError, UnicodeDecodeError, MessagesError) as exc:
        print(f"cannot read messages: {exc}", file=sys.stderr)
        return 2
    ascii_only = not (sys.stdout.encoding or "").lower().replace("-", "").startswith("utf")
    scanner = ruleset.scanner()
    for message in messages:
        for match in scanner.feed(message):
            _print(match, ascii_only)
    for match in scanner.finish():
        _print(match, ascii_only)
    sys.stdout.flush()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m rules.cli rules check|eval ...`` (the same as ``recall-worker rules ...``)."""
    parser = argparse.ArgumentParser(prog="recall-worker")
    add_rules_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
