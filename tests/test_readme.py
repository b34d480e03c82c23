"""The README says what the code does: its command table matches the CLI's parser, its result example
the result model.

(The settings and metrics tables are checked in ``tests/test_config.py``, the alerts in ``tests/deploy``; the
intake's metrics table and its curl example here.)
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
from pathlib import Path

from worker.cli import build_parser
from worker.config import load_settings
from worker.intake.metrics import intake_metrics_table
from worker.intake.server import IntakeThread, build_intake
from worker.media.metrics import media_metrics_table
from worker.results import JobResult

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def section(title: str) -> str:
    """The text of a README section, from its heading to the next heading of any level."""
    match = re.search(rf"^#+ {re.escape(title)}\n(.*?)(?=^#+ )", README, re.MULTILINE | re.DOTALL)
    assert match, f"README section {title!r}"
    return match.group(1)


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """A parser's sub-commands by name (empty when it has none)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def options(parser: argparse.ArgumentParser) -> set[str]:
    return {option for action in parser._actions for option in action.option_strings}


def table_commands() -> list[list[str]]:
    """Each command the README's command table names, as words (``["plans", "show", "ID"]``).

    Read from the code spans of each row's first cell; a span without ``recall-worker`` continues the row's
    command (``recall-worker dlq list`` / ``dlq replay``).
    """
    rows = [line for line in section("Command line").splitlines() if line.startswith("| `")]
    assert rows, "the README's command table"
    commands = []
    for row in rows:
        first_cell = re.split(r"(?<!\\)\|", row)[1]
        for span in re.findall(r"`([^`]+)`", first_cell):
            words = span.replace("\\|", "|").split()
            if words[0] == "recall-worker":
                words = words[1:]
            commands.append(words)
    return commands


def test_the_command_table_names_every_command_the_cli_has_and_no_other() -> None:
    parser = build_parser()
    top = subcommands(parser)
    listed = table_commands()
    assert {words[0] for words in listed} == set(top), (
        "the README's command table (### Command line) and worker.cli.build_parser() name the same commands"
    )
    for name, sub in top.items():
        nested = subcommands(sub)
        if nested:
            named = {words[1] for words in listed if words[0] == name and len(words) > 1}
            assert named == set(nested), (
                f"`recall-worker {name} …`: the table has {named}, the CLI {set(nested)}"
            )


def test_the_command_tables_options_exist() -> None:
    top = subcommands(build_parser())
    for words in table_commands():
        parser = top[words[0]]
        nested = subcommands(parser)
        if nested and len(words) > 1 and not words[1].startswith("-"):  # `intake` alone serves
            parser = nested[words[1]]
        for option in re.findall(r"--[a-z0-9][a-z0-9-]*", " ".join(words)):
            assert option in options(parser), f"`{' '.join(words)}`: no option {option}"


def test_the_results_example_is_a_complete_result() -> None:
    block = re.search(r"```json\n(.*?)```", section("Results"), re.DOTALL)
    assert block, "the README's results example"
    example = json.loads(block.group(1))
    result = JobResult.model_validate(example)
    assert set(example) == set(JobResult.model_fields), (
        f"the example lacks {sorted(set(JobResult.model_fields) - set(example))}"
    )
    assert result.model_dump(mode="json") == example, "the example is a result as published"


def test_the_readme_lists_every_intake_metric() -> None:
    assert intake_metrics_table() in README, (
        "regenerate the README's intake metrics table with worker.intake.metrics.intake_metrics_table()"
    )


def test_the_curl_example_files_a_report(tmp_path: Path) -> None:
    [block] = [b for b in re.findall(r"```sh\n(.*?)```", section("The API"), re.DOTALL) if "openssl" in b]
    first_line = block.splitlines()[0]
    values = dict(part.split("=", 1) for part in first_line.split())
    settings = load_settings(
        database_url=f"sqlite:///{tmp_path}/ledger.db",
        broker_url=f"sqlite:///{tmp_path}/queue.db",
        intake_keys=f"{values['KEY_ID']}:{values['SECRET']}",
    )
    with IntakeThread(build_intake(settings)) as intake:
        script = block.replace(f"URL={values['URL']}", f"URL={intake.url}", 1)
        ran = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=30, check=False)
        assert ran.returncode == 0, ran.stderr
        answer = json.loads(ran.stdout)
        assert answer["status"] == "queued" and answer["report_id"].startswith("rpt_")
        status = intake.intake.store.report_status(answer["report_id"])
        assert status is not None and status["reporter"] == "carol"


def test_the_readme_lists_every_media_metric() -> None:
    assert media_metrics_table() in README, (
        "regenerate the README's media metrics table with worker.media.metrics.media_metrics_table()"
    )
