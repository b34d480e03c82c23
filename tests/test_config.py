"""Settings: defaults, environment, config file, the key from a mounted file, every invalid case."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from worker.config import ConfigError, load_settings, settings_table
from worker.observability import metrics_table


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("RECALL_"):
            monkeypatch.delenv(name)


def test_defaults_run_everything_embedded() -> None:
    settings = load_settings()
    assert settings.broker_url == "sqlite:///.recall/queue.db"
    assert (settings.concurrency, settings.max_attempts, settings.max_recalls_per_job) == (4, 5, 50)
    assert (settings.http_port, settings.tim_rate_limit, settings.tim_region) == (9102, 200, "china")
    assert settings.tim_key is None


def test_environment_overrides_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECALL_BROKER_URL", "amqp://u:p@rabbit:5672/prod")
    monkeypatch.setenv("RECALL_CONCURRENCY", "16")
    monkeypatch.setenv("RECALL_TIM_KEY", "s3cret-key-value")
    settings = load_settings()
    assert settings.concurrency == 16
    assert settings.key() == "s3cret-key-value"
    shown = settings.masked()
    assert shown["tim_key"] == "***"
    assert shown["broker_url"] == "amqp://u:***@rabbit:5672/prod"
    assert "s3cret-key-value" not in repr(settings)


def test_config_file_then_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "recall.env"
    config.write_text('# production\nRECALL_CONCURRENCY=8\nRECALL_TIM_REGION="singapore"\n')
    monkeypatch.setenv("RECALL_CONCURRENCY", "12")
    settings = load_settings(config)
    assert (settings.concurrency, settings.tim_region) == (12, "singapore")


def test_key_from_a_mounted_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = tmp_path / "tim-key"
    secret.write_text("from-the-secret-volume\n")
    monkeypatch.setenv("RECALL_TIM_KEY_FILE", str(secret))
    assert load_settings().key() == "from-the-secret-volume"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"RECALL_CONCURRENCY": "zero"}, "concurrency (RECALL_CONCURRENCY): Input should be a valid integer"),
        (
            {"RECALL_CONCURRENCY": "0"},
            "concurrency (RECALL_CONCURRENCY): Input should be greater than or equal to 1",
        ),
        ({"RECALL_BROKER_URL": "http://x"}, "broker_url (RECALL_BROKER_URL): must start with sqlite://"),
        ({"RECALL_TIM_REGION": "mars"}, "tim_region (RECALL_TIM_REGION): unknown region 'mars'"),
        (
            {"RECALL_HTTP_PORT": "70000"},
            "http_port (RECALL_HTTP_PORT): Input should be less than or equal to 65535",
        ),
        (
            {"RECALL_LOG_FORMAT": "xml"},
            "log_format (RECALL_LOG_FORMAT): Input should be 'auto', 'json' or 'console'",
        ),
        ({"RECALL_TIM_KEY_FILE": "/nonexistent/key"}, "RECALL_TIM_KEY_FILE /nonexistent/key: No such file"),
        (
            {"RECALL_TIM_KEY": "a", "RECALL_TIM_KEY_FILE": "/x"},
            "set RECALL_TIM_KEY or RECALL_TIM_KEY_FILE, not both",
        ),
        ({"RECALL_MAX_RECALLS_PER_JOB": "-1"}, "max_recalls_per_job (RECALL_MAX_RECALLS_PER_JOB)"),
    ],
)
def test_each_invalid_setting_is_named(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], expected: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert any(expected in problem for problem in caught.value.problems), caught.value.problems


def test_every_problem_is_reported_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECALL_CONCURRENCY", "x")
    monkeypatch.setenv("RECALL_TIM_REGION", "mars")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert len(caught.value.problems) == 2


def test_an_empty_key_file_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "key").write_text("\n")
    monkeypatch.setenv("RECALL_TIM_KEY_FILE", str(tmp_path / "key"))
    with pytest.raises(ConfigError, match="is empty"):
        load_settings()


def test_missing_key_is_a_clear_error_when_it_is_needed() -> None:
    with pytest.raises(ConfigError, match="tim_key: set RECALL_TIM_KEY or RECALL_TIM_KEY_FILE"):
        load_settings().key()


@pytest.mark.parametrize(
    ("line", "expected"),
    [("CONCURRENCY=3", "expected RECALL_NAME=value"), ("RECALL_NOPE=1", "unknown setting RECALL_NOPE")],
)
def test_config_file_problems_name_the_line(tmp_path: Path, line: str, expected: str) -> None:
    config = tmp_path / "recall.env"
    config.write_text(f"RECALL_CONCURRENCY=2\n{line}\n")
    with pytest.raises(ConfigError, match=f"recall.env:2: {expected}"):
        load_settings(config)


def test_the_readme_lists_every_setting_as_the_code_defines_it() -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    assert settings_table() in readme, "regenerate the README's table with worker.config.settings_table()"


def test_the_readme_lists_every_metric_as_the_code_defines_it() -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    assert metrics_table() in readme, (
        "regenerate the README's table with worker.observability.metrics_table()"
    )


def test_the_worker_refuses_to_start_naming_every_bad_setting() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECALL_")}
    env.update({"RECALL_CONCURRENCY": "many", "RECALL_BROKER_URL": "kafka://x"})
    entrypoint = Path(sys.executable).with_name("recall-worker")
    started = subprocess.run(
        [str(entrypoint), "run"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert started.returncode == 2
    assert "concurrency (RECALL_CONCURRENCY)" in started.stderr
    assert "broker_url (RECALL_BROKER_URL)" in started.stderr
    no_key = subprocess.run(
        [str(entrypoint), "run"],
        env={k: v for k, v in env.items() if k not in ("RECALL_CONCURRENCY", "RECALL_BROKER_URL")},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert no_key.returncode == 2
    assert "set RECALL_TIM_KEY or RECALL_TIM_KEY_FILE" in no_key.stderr


def test_the_intakes_secrets_are_masked_and_its_keys_checked(tmp_path: Path) -> None:
    keys = "old:first-secret-0123456789,new:second-secret-987654321"
    settings = load_settings(
        intake_keys=keys, intake_webhook_secret="webhook-secret-value", tim_callback_token="callback-token"
    )
    assert settings.intake_key_map() == {"old": "first-secret-0123456789", "new": "second-secret-987654321"}
    shown = str(settings.masked())
    for secret in ("first-secret", "second-secret", "webhook-secret-value", "callback-token"):
        assert secret not in shown
    key_file = tmp_path / "keys"
    key_file.write_text("k1:from-a-mounted-file-0123\n")
    assert load_settings(intake_keys_file=key_file).intake_key_map() == {"k1": "from-a-mounted-file-0123"}
    for bad, says in (
        ("nocolon", "ID:SECRET"),
        ("k1:short", "16 characters"),
        ("a:0123456789abcdef,a:0123456789abcdef", "twice"),
        ("a:0123456789abcdef,b:0123456789abcdef,c:0123456789abcdef", "at most two"),
    ):
        with pytest.raises(ConfigError, match=says) as refused:
            load_settings(intake_keys=bad)
        assert "RECALL_INTAKE_KEYS" in str(refused.value)
        assert "0123456789abcdef" not in str(refused.value)
