"""Settings: one typed object from ``RECALL_*`` environment variables and an optional file.

Secrets (the app key) may come from the environment or a mounted file (``RECALL_TIM_KEY_FILE``). Every
missing or invalid setting is reported at once, by name, before anything starts.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, PrivateAttr, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from worker.media.allow import TENCENT_MEDIA_HOSTS, parse_host_patterns, parse_networks
from worker.redact import MASK
from worker.tim.regions import REGION_DOMAINS

ENV_PREFIX = "RECALL_"
#: Names the config file when ``--config`` is not given.
CONFIG_FILE_VARIABLE = "RECALL_CONFIG_FILE"


class Settings(BaseSettings):
    """Every setting of the worker; see the README's configuration table."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", validate_default=True)

    # queue
    broker_url: str = Field(
        "sqlite:///.recall/queue.db",
        description="sqlite:///PATH for the embedded on-disk queue, amqp://… for RabbitMQ",
    )
    queue_prefix: str = Field(
        "recall", pattern=r"^[a-z][a-z0-9_.-]*$", description="prefix of every queue name"
    )
    concurrency: int = Field(4, ge=1, le=256, description="jobs in flight per worker process and queue lane")
    max_attempts: int = Field(5, ge=1, le=50, description="attempts before a job is dead-lettered")
    retry_base_delay_s: float = Field(
        2.0, gt=0, description="delay before the first retry; doubles each time"
    )
    retry_max_delay_s: float = Field(300.0, gt=0, description="longest delay between attempts")
    heartbeat_s: int = Field(15, ge=2, le=120, description="AMQP heartbeat")
    confirm_timeout_s: float = Field(10.0, gt=0, description="wait for the broker to confirm a publish")
    shutdown_budget_s: float = Field(25.0, ge=0, description="on SIGTERM, time given to jobs in flight")
    job_timeout_s: float = Field(600.0, gt=0, description="a job running longer fails (and is retried)")

    # Chat REST API
    tim_sdkappid: int = Field(1400000000, ge=1, description="the app's SDKAppID")
    tim_key: SecretStr | None = Field(None, description="the app's secret key (or RECALL_TIM_KEY_FILE)")
    tim_key_file: Path | None = Field(None, description="file holding the secret key (a mounted Secret)")
    tim_admin: str = Field("administrator", min_length=1, max_length=32, description="the app admin account")
    tim_region: str = Field("china", description="data-centre region: " + ", ".join(REGION_DOMAINS))
    tim_base_url: str | None = Field(None, description="explicit API base URL (overrides the region)")
    tim_rate_limit: int = Field(
        200,
        ge=1,
        description="calls/s per command at most: the app's, shared by the fleet with RECALL_REDIS_URL",
    )
    tim_rate_floor: int = Field(
        10, ge=1, description="rate-limit answers never take a command below this calls/s"
    )
    tim_rate_probe_s: float = Field(
        15.0,
        ge=0,
        description="after a rate-limit answer, hold just under the refused rate this long, then probe",
    )
    tim_rate_limit_patience_s: float = Field(
        120.0, ge=0, description="a call answered rate-limited queues again for up to this long"
    )
    tim_timeout_s: float = Field(10.0, gt=0, description="HTTP timeout of one call")
    tim_max_attempts: int = Field(5, ge=1, le=20, description="attempts of one call on transient errors")
    tim_usersig_ttl_s: int = Field(7 * 86400, ge=3600, description="lifetime of generated UserSigs")
    credential_recheck_s: float = Field(
        30.0, gt=0, description="while the API refuses the credentials, check them again this often"
    )

    # moderation
    rules_path: Path | None = Field(None, description="rule-set file (default: the shipped example)")
    max_recalls_per_job: int = Field(50, ge=1, description="more matches than this escalate the job")
    protected_accounts: list[str] = Field(
        default_factory=list, description="comma-separated accounts whose messages are never recalled"
    )
    verify_recalls: bool = Field(
        True, description="re-read the history pages that held recalled messages, check each recall"
    )
    breaker_factor: float = Field(
        10.0, gt=1, description="a rule matching this many times its usual rate trips"
    )
    breaker_min_matches: int = Field(20, ge=1, description="fewer matches in a job never trip the breaker")
    breaker_min_jobs: int = Field(5, ge=0, description="jobs of history needed before the breaker can trip")
    breaker_lookback_s: int = Field(7 * 86400, ge=60, description="how far back the usual rate is measured")
    breaker_cooldown_s: int = Field(3600, ge=0, description="how long a tripped rule only plans for review")

    # media
    media_allowed_hosts: list[str] = Field(
        default_factory=lambda: list(TENCENT_MEDIA_HOSTS),
        description="comma-separated hosts pictures may be fetched from; `*.domain` matches every name "
        "under the domain (default: Tencent Cloud object storage, where Chat keeps message media)",
    )
    media_allowed_networks: list[str] = Field(
        default_factory=list,
        description="comma-separated CIDRs of non-public addresses picture hosts may resolve to "
        "(e.g. 127.0.0.0/8 for the local emulator; none: public addresses only)",
    )
    media_max_bytes: int = Field(5 * 1024 * 1024, ge=1024, description="largest picture fetched, in bytes")
    media_timeout_s: float = Field(
        5.0, gt=0, le=120, description="total time one picture's fetch may take, redirects included"
    )
    media_concurrency: int = Field(8, ge=1, le=256, description="pictures fetched at once per process")
    media_cache_ttl_s: int = Field(
        86400, ge=0, description="how long a fetched picture (or why it was refused) is cached; 0: never"
    )

    # ledger
    database_url: str = Field(
        "sqlite:///.recall/ledger.db", description="the ledger: sqlite:///PATH or postgresql://…"
    )
    evidence_retention_days: int = Field(
        180, ge=1, description="evidence older than this is purged on request"
    )
    review_token: SecretStr | None = Field(None, description="token of the review page (unset: page off)")
    review_secure_cookie: Literal["auto", "true", "false"] = Field(
        "auto",
        description="Secure flag of the review page's cookies; auto: when the request came over https "
        "(behind a TLS-terminating proxy, set true)",
    )

    # report intake
    intake_keys: SecretStr | None = Field(
        None,
        description="keys signing reports, ID:SECRET,ID:SECRET (two during a rotation; unset: intake off)",
    )
    intake_keys_file: Path | None = Field(
        None, description="file holding RECALL_INTAKE_KEYS (a mounted Secret)"
    )
    intake_host: str = Field("0.0.0.0", description="intake bind address")  # noqa: S104 - a pod must be reached
    intake_port: int = Field(9104, ge=0, le=65535, description="intake HTTP port")
    intake_quiet_s: float = Field(
        60.0,
        ge=0,
        description="reports on one conversation and suspect gather until this long passes quietly",
    )
    intake_max_wait_s: float = Field(600.0, ge=0, description="a report waits at most this long for its job")
    intake_lookback_s: int = Field(
        86400, ge=60, le=90 * 86400, description="a report's job scans this far back from the first report"
    )
    intake_reporter_limit: int = Field(20, ge=1, description="reports one reporter may file per minute")
    intake_trusted_reporters: list[str] = Field(
        default_factory=list, description="comma-separated reporters whose reports act at once"
    )
    intake_low_trust: float = Field(
        0.35,
        ge=0,
        le=1,
        description="reporters below this trust score only get dry runs, unless others agree",
    )
    intake_agree: int = Field(
        3, ge=1, description="distinct reporters on one suspect that make a low-trust report act"
    )
    intake_ruleset: str = Field("default", min_length=1, max_length=64, description="rule set of intake jobs")
    intake_webhook_url: str | None = Field(None, description="the app backend's URL for report outcomes")
    intake_webhook_secret: SecretStr | None = Field(None, description="key signing the outcome webhooks")
    intake_webhook_attempts: int = Field(8, ge=1, le=50, description="deliveries tried before one is dead")
    intake_webhook_timeout_s: float = Field(5.0, gt=0, description="wait this long for the app backend")
    intake_notices: bool = Field(
        False, description="tell reporters the outcome as a chat message from the admin"
    )
    intake_notice_templates: Path | None = Field(
        None, description="YAML file of notice templates per language (default: the shipped ones)"
    )
    tim_callback_token: SecretStr | None = Field(
        None, description="token of Tencent's callbacks: their Sign is checked when set"
    )
    intake_alarm_hold_s: float = Field(
        300.0, gt=0, description="after a rate alarm, a command's budget stays lowered this long"
    )

    # operations
    http_port: int = Field(9102, ge=0, le=65535, description="health and metrics port (0: off)")
    http_host: str = Field("0.0.0.0", description="health and metrics bind address")  # noqa: S104 - a pod must be probed
    log_format: Literal["auto", "json", "console"] = Field("auto", description="auto: console on a terminal")
    log_level: Literal["debug", "info", "warning", "error"] = Field("info", description="least level logged")
    log_text_limit: int = Field(200, ge=0, le=10000, description="characters of message text in a log line")
    log_text_hash: bool = Field(
        False, description="log a hash of message text instead of an excerpt (privacy)"
    )
    redis_url: str | None = Field(None, description="redis://… to share the API rate limit across replicas")

    @field_validator(
        "protected_accounts",
        "intake_trusted_reporters",
        "media_allowed_hosts",
        "media_allowed_networks",
        mode="before",
    )
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("media_allowed_hosts")
    @classmethod
    def _media_hosts(cls, value: list[str]) -> list[str]:
        return list(parse_host_patterns(value))

    @field_validator("media_allowed_networks")
    @classmethod
    def _media_networks(cls, value: list[str]) -> list[str]:
        return [str(network) for network in parse_networks(value)]

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str) -> str:
        if not value.startswith(("sqlite://", "postgresql://", "postgresql+psycopg://")):
            raise ValueError("must start with sqlite:// or postgresql://")
        return value

    @field_validator("tim_region")
    @classmethod
    def _known_region(cls, value: str) -> str:
        if value not in REGION_DOMAINS:
            raise ValueError(f"unknown region {value!r}; known: {', '.join(REGION_DOMAINS)}")
        return value

    @field_validator("broker_url")
    @classmethod
    def _known_broker(cls, value: str) -> str:
        if not value.startswith(("sqlite://", "amqp://", "amqps://", "pyamqp://", "memory://")):
            raise ValueError("must start with sqlite://, amqp://, amqps:// or memory://")
        return value

    _file_key: SecretStr | None = PrivateAttr(None)
    _intake_keys: dict[str, str] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _intake_keys_parsed(self) -> Settings:
        if self.intake_keys_file is not None:
            if self.intake_keys is not None:
                raise ValueError("set RECALL_INTAKE_KEYS or RECALL_INTAKE_KEYS_FILE, not both")
            try:
                text = self.intake_keys_file.read_text().strip()
            except OSError as exc:
                raise ValueError(f"RECALL_INTAKE_KEYS_FILE {self.intake_keys_file}: {exc.strerror}") from None
        elif self.intake_keys is not None:
            text = self.intake_keys.get_secret_value().strip()
        else:
            return self
        try:
            self._intake_keys = parse_intake_keys(text)
        except ValueError as exc:
            variable = (
                "RECALL_INTAKE_KEYS_FILE" if self.intake_keys_file is not None else "RECALL_INTAKE_KEYS"
            )
            raise ValueError(f"{variable}: {exc}") from None
        return self

    def intake_key_map(self) -> dict[str, str]:
        """The intake's signing keys, key id -> secret (empty when intake is not configured)."""
        return dict(self._intake_keys)

    @model_validator(mode="after")
    def _key_from_file(self) -> Settings:
        if self.tim_key_file is not None:
            if self.tim_key is not None:
                raise ValueError("set RECALL_TIM_KEY or RECALL_TIM_KEY_FILE, not both")
            try:
                key = self.tim_key_file.read_text().strip()
            except OSError as exc:
                raise ValueError(f"RECALL_TIM_KEY_FILE {self.tim_key_file}: {exc.strerror}") from None
            if not key:
                raise ValueError(f"RECALL_TIM_KEY_FILE {self.tim_key_file} is empty")
            self._file_key = SecretStr(key)
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # load_settings reads the environment and the config file itself (with line numbers in errors);
        # the class validates only what it is handed, so nothing is read twice or from elsewhere.
        return (init_settings,)

    def key(self) -> str:
        """The app key (given directly or read from the key file), or a clear error if there is none."""
        secret = self.tim_key or self._file_key
        if secret is None:
            raise ConfigError(["tim_key: set RECALL_TIM_KEY or RECALL_TIM_KEY_FILE"])
        return secret.get_secret_value()

    def masked(self) -> dict[str, Any]:
        """The effective settings with secrets masked, for ``recall-worker config show``."""
        shown = self.model_dump(mode="json")
        if self.tim_key is not None or self._file_key is not None:
            shown["tim_key"] = MASK
        for name in ("review_token", "intake_keys", "intake_webhook_secret", "tim_callback_token"):
            if getattr(self, name) is not None:
                shown[name] = MASK
        for name in ("broker_url", "redis_url", "database_url"):
            if shown.get(name):
                shown[name] = _mask_url_password(shown[name])
        return shown


def parse_intake_keys(text: str) -> dict[str, str]:
    """``ID:SECRET,ID:SECRET`` (commas or newlines) as a dict; ValueError naming the problem, not a secret."""
    keys: dict[str, str] = {}
    for number, part in enumerate((p.strip() for p in text.replace("\n", ",").split(",")), start=1):
        if not part:
            continue
        key_id, sep, secret = part.partition(":")
        if not sep or not key_id.strip() or len(secret.strip()) < 16:
            raise ValueError(f"intake key {number} must be ID:SECRET with a secret of 16 characters or more")
        if key_id.strip() in keys:
            raise ValueError(f"intake key id {key_id.strip()!r} is given twice")
        keys[key_id.strip()] = secret.strip()
    if not keys:
        raise ValueError("no intake key given")
    if len(keys) > 2:
        raise ValueError("at most two intake keys are valid at once (the current one and the next)")
    return keys


def mask_url(url: str) -> str:
    """``url`` with its password, if any, masked (for messages and ``config show``)."""
    return _mask_url_password(url)


def _mask_url_password(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not at or ":" not in credentials:
        return url
    user = credentials.split(":", 1)[0]
    return f"{scheme}{sep}{user}:***@{host}"


class ConfigError(ValueError):
    """Settings that cannot be used; ``problems`` names each one."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid configuration:\n  " + "\n  ".join(problems))

    def one_line(self) -> str:
        """Every problem on one line, for a command's error message."""
        return "invalid configuration: " + "; ".join(self.problems)


def _env_name(field: str) -> str:
    return ENV_PREFIX + field.upper()


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Read the settings: ``overrides``, then the environment, then ``config_file`` (``KEY=value`` lines,
    the same ``RECALL_*`` names), then defaults. Raises :class:`ConfigError` naming every bad setting: the
    config file's malformed lines and unknown names together with every invalid value, in one report."""
    values: dict[str, Any] = {}
    problems: list[str] = []
    file_path = config_file or (Path(p) if (p := os.environ.get(CONFIG_FILE_VARIABLE)) else None)
    if file_path is not None:
        from_file, problems = _read_config_file(file_path)
        values.update(from_file)
    for name in Settings.model_fields:
        if (env := os.environ.get(_env_name(name))) is not None:
            values[name] = env
    values.update(overrides)
    try:
        settings = Settings.model_validate(values)
    except ValidationError as exc:
        for error in exc.errors(include_url=False):
            field = ".".join(str(p) for p in error["loc"])
            where = f"{field} ({_env_name(field)})" if field else "(settings)"
            problems.append(f"{where}: {error['msg'].removeprefix('Value error, ')}")
    if problems:
        raise ConfigError(problems)
    return settings


def unknown_environment(environ: Mapping[str, str] | None = None) -> list[str]:
    """One warning for each ``RECALL_*`` environment variable that is no setting (a misspelling, most
    likely), naming the closest setting when there is one."""
    environ = os.environ if environ is None else environ
    known = {_env_name(name) for name in Settings.model_fields} | {CONFIG_FILE_VARIABLE}
    warnings = []
    for name in sorted(environ):
        if name.startswith(ENV_PREFIX) and name not in known:
            close = difflib.get_close_matches(name, sorted(known), n=1)
            guess = f" (did you mean {close[0]}?)" if close else ""
            warnings.append(f"ignoring unknown environment variable {name}{guess}")
    return warnings


def _read_config_file(path: Path) -> tuple[dict[str, str], list[str]]:
    """The values of a config file, and a problem for each line that is not ``RECALL_NAME=value`` of a
    known setting."""
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise ConfigError([f"config file {path}: {exc.strerror or exc}"]) from None
    except UnicodeDecodeError:
        raise ConfigError([f"config file {path}: not UTF-8 text"]) from None
    values: dict[str, str] = {}
    problems = []
    for number, line in enumerate(lines, start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        name, sep, value = stripped.partition("=")
        name = name.strip()
        if not sep or not name.startswith(ENV_PREFIX):
            problems.append(f"{path}:{number}: expected RECALL_NAME=value")
            continue
        field = name.removeprefix(ENV_PREFIX).lower()
        if field not in Settings.model_fields:
            problems.append(f"{path}:{number}: unknown setting {name}")
            continue
        values[field] = value.strip().strip('"')
    return values, problems


def settings_table() -> str:
    """The Markdown table of every setting (variable, default, meaning), as the README shows it."""
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        default = field.get_default(call_default_factory=True)
        shown = "(none)" if default is None or default == [] else f"`{default}`"
        lines.append(f"| `{_env_name(name)}` | {shown} | {field.description or ''} |")
    return "\n".join(lines)
