"""``recall-worker rules check|eval``: validate a rule file, and try it on messages before it ships.

``check FILE`` loads and compiles every rule set, printing each problem as ``file:line: message`` (exit 1)
or a summary (exit 0). ``eval FILE [--ruleset NAME] [--media-dir DIR] [MESSAGES]`` reads messages in the
Chat API's JSON shape (one object, a list, a history reply, or JSON lines; from MESSAGES or stdin) and prints
one JSON line per match. Exit status: 0 done, 1 the rule file is broken, 2 the messages or the rule set name
are.

``--media-dir DIR`` gives the media rules (``qr``, ``image_hash``) the pictures' bytes: the picture
:func:`rules.media.media_refs` picks from a message is read from the file in DIR named by its UUID as
``media_refs`` spells it (an image's ``UUID`` followed by ``#`` and the ``ImageInfoArray`` entry's
``Type``, e.g. ``abc123#3`` for the thumbnail; a video's ``ThumbUUID``), or else by the UUID without the
``#<Type>`` suffix (``abc123``: one file serves every size of an image). A missing file is reported as
``not examined: no file <name>``; nothing is fetched.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from rules.config import load_file
from rules.errors import RulesError
from rules.images import DEFAULT_MAX_BYTES
from rules.media import Media, MediaRef, media_refs
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
        usage="%(prog)s FILE [--ruleset NAME] [--media-dir DIR] [MESSAGES]",
        epilog="MESSAGES: a file of messages in the Chat API's JSON shape; stdin when absent or '-'.",
    )
    evaluate.add_argument("file", type=Path, help="rule file (YAML or TOML)")
    evaluate.add_argument("--ruleset", default="default", help="rule set to run (default: %(default)s)")
    evaluate.add_argument(
        "--media-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="pictures for qr and image_hash rules, in files named by UUID (abc123#3, or abc123)",
    )
    # argparse cannot take a positional after an option that follows another positional (FILE --ruleset X
    # MESSAGES): the rest of the line is parsed by _rest() instead.
    evaluate.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    evaluate.set_defaults(func=eval_command)


def _rest(args: argparse.Namespace) -> tuple[str, str, Path | None]:
    """``(ruleset, messages, media dir)`` of ``rules eval``, from the options and what follows FILE."""
    parser = argparse.ArgumentParser(prog="recall-worker rules eval FILE", add_help=False)
    parser.add_argument("--ruleset", default=None)
    parser.add_argument("--media-dir", type=Path, default=None)
    parser.add_argument("messages", nargs="?", default="-")
    rest = parser.parse_args(args.rest)
    return rest.ruleset or args.ruleset, rest.messages, rest.media_dir or args.media_dir


def media_file_names(ref: MediaRef) -> list[str]:
    """The file names a picture may have in a ``--media-dir``: its UUID as ``media_refs`` spells it, then
    without the ``#<Type>`` suffix. Names that are not a plain file name (``..``, ``a/b``) are left out."""
    names = [ref.uuid]
    base, hash_sign, _ = ref.uuid.rpartition("#")
    if hash_sign and base:
        names.append(base)
    return [n for n in names if n not in (".", "..") and "/" not in n and "\\" not in n and "\0" not in n]


def read_media(
    directory: Path, refs: Iterable[MediaRef], max_bytes: int = DEFAULT_MAX_BYTES
) -> dict[str, Media]:
    """The pictures ``refs`` name, read from ``directory`` (see :func:`media_file_names`), by UUID."""
    out: dict[str, Media] = {}
    for ref in refs:
        if ref.uuid in out:
            continue
        names = media_file_names(ref)
        media = Media(ref.uuid, None, f"no file {' or '.join(names) or 'name for ' + repr(ref.uuid)}")
        for name in names:
            path = directory / name
            try:
                if not path.is_file():
                    continue
                size = path.stat().st_size
                if size > max_bytes:
                    media = Media(ref.uuid, None, f"refused: {name} is {size} bytes (limit {max_bytes})")
                else:
                    media = Media(ref.uuid, path.read_bytes())
            except OSError as exc:
                media = Media(ref.uuid, None, f"cannot read {name}: {exc.strerror or exc}")
            break
        out[ref.uuid] = media
    return out


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
    """``rules eval FILE [--ruleset NAME] [--media-dir DIR] [MESSAGES]``."""
    name, messages_path, media_dir = _rest(args)
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
    if media_dir is not None and not media_dir.is_dir():
        print(f"--media-dir {media_dir}: not a directory", file=sys.stderr)
        return 2
    if ruleset.wants_media and media_dir is None:
        print("note: this rule set examines pictures; give --media-dir DIR to supply them", file=sys.stderr)
    ascii_only = not (sys.stdout.encoding or "").lower().replace("-", "").startswith("utf")
    scanner = ruleset.scanner()
    for message in messages:
        media = None
        if ruleset.wants_media:
            refs = media_refs(message.body)
            media = (
                read_media(media_dir, refs)
                if media_dir is not None
                else {r.uuid: Media(r.uuid, None, "no --media-dir given") for r in refs}
            )
        for match in scanner.feed_many((message,), media=media):
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
