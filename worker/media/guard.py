"""The fetcher's decisions, as pure functions: which URLs may be requested, which redirects followed, what
each outcome is called, and how long it may be cached.

Every picture that is not handed on gets a :class:`Verdict`: a short reason the media rules record
("refused: host not allowed (evil.example)", "failed: HTTP 404"), a kind (a bounded metric label) and a
retention (how long a cache may keep it). *Refused* means the fetcher would not take it (policy, or what
the remote sent breaks a limit); *failed* means the remote could not give it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal

import httpx

from rules.media import Media
from worker.media.allow import host_allowed, normalise_host

#: Redirects followed for one picture, each re-checked against the allow list.
MAX_REDIRECTS: Final = 3
REDIRECT_STATUSES: Final = frozenset({301, 302, 303, 307, 308})

Retention = Literal["none", "short", "full"]


@dataclass(frozen=True, slots=True)
class Verdict:
    """Why a picture is not handed on."""

    status: Literal["refused", "failed"]
    kind: str  # a metric label: scheme, url, host, address, redirect, dns, network, timeout, size, ...
    detail: str
    #: "none": never cached (depends on this process's settings, or on DNS); "short": a transient
    #: failure, cached briefly so a fleet does not hammer it; "full": what the remote holds, cached as long
    #: as a picture would be.
    retention: Retention = "none"

    @property
    def reason(self) -> str:
        """The reason the media rules record, e.g. "refused: body over 5 MB"."""
        return f"{self.status}: {self.detail}"


def refused(kind: str, detail: str, retention: Retention = "none") -> Verdict:
    """A refusal: the fetcher would not take the picture."""
    return Verdict("refused", kind, detail, retention)


def failed(kind: str, detail: str, retention: Retention = "short") -> Verdict:
    """A failure: the remote could not give the picture."""
    return Verdict("failed", kind, detail, retention)


@dataclass(frozen=True, slots=True)
class Target:
    """A URL that passed the checks: what to connect to and what to ask for."""

    scheme: Literal["http", "https"]
    host: str  # normalised (lower-case, IDNA, no trailing dot); what DNS resolves and TLS verifies
    port: int
    target: bytes  # path and query, as sent on the request line
    url: httpx.URL

    @property
    def authority(self) -> str:
        """``host[:port]`` as the Host header carries it (the port only when it is not the default)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def check_url(url: str | httpx.URL, allowed_hosts: Sequence[str]) -> Target | Verdict:  # noqa: PLR0911
    """``url`` as a :class:`Target` when it may be requested, else the refusal: only http and https, no
    credentials, a valid port, and a host on the allow list. (Addresses are checked when connecting.)"""
    try:
        parsed = url if isinstance(url, httpx.URL) else httpx.URL(url)
        port = parsed.port
    except (httpx.InvalidURL, ValueError, TypeError):
        return refused("url", "malformed URL")
    scheme = parsed.scheme
    if scheme not in ("http", "https"):
        return refused("scheme", f"not an http(s) URL ({_short(scheme, 16) or 'no scheme'})")
    try:
        host = normalise_host(parsed.raw_host.decode("ascii"))
    except UnicodeDecodeError:
        return refused("url", "malformed URL")
    if not host:
        return refused("url", "malformed URL (no host)")
    if parsed.userinfo:
        return refused("url", "credentials in URL")
    if port is not None and not 0 < port < 65536:
        return refused("url", f"malformed URL (port {port})")
    if not host_allowed(host, allowed_hosts):
        return refused("host", f"host not allowed ({_short(host)})")
    effective_port = port or (443 if scheme == "https" else 80)
    return Target(
        "https" if scheme == "https" else "http", host, effective_port, parsed.raw_path or b"/", parsed
    )


def follow_redirect(  # noqa: PLR0911 - one return per case
    current: Target, location: str | None, hop: int, allowed_hosts: Sequence[str]
) -> Target | Verdict:
    """Where redirect number ``hop`` (1 for the first) from ``current`` leads, when it may be followed:
    at most :data:`MAX_REDIRECTS`, to an http(s) URL on the allow list."""
    if not location:
        return failed("redirect", "redirect without a Location", "full")
    if hop > MAX_REDIRECTS:
        return refused("redirect", f"more than {MAX_REDIRECTS} redirects", "full")
    try:
        joined = current.url.join(location)
    except (httpx.InvalidURL, ValueError, TypeError):
        return refused("redirect", "redirect to a malformed URL", "full")
    checked = check_url(joined, allowed_hosts)
    if isinstance(checked, Target):
        return checked
    if checked.kind == "host":
        return refused("redirect", f"redirect to another host, not allowed ({_short(joined.host)})")
    if checked.kind == "scheme":
        return refused("redirect", f"redirect to a non-http URL ({_short(joined.scheme, 16)})", "full")
    return refused("redirect", f"redirect refused ({checked.detail})")


def http_failure(status: int) -> Verdict:
    """The failure of an answer other than 200 (and redirects): "failed: HTTP 404"."""
    transient = status >= 500 or status in (408, 425, 429)
    return failed("http", f"HTTP {status}", "short" if transient else "full")


def size_text(limit: int) -> str:
    """``limit`` bytes for a reason: "5 MB", "64 KB", "1000 bytes"."""
    mib, kib = 1024 * 1024, 1024
    if limit >= mib:
        return f"{limit // mib} MB" if limit % mib == 0 else f"{limit / mib:.1f} MB"
    if limit >= kib and limit % kib == 0:
        return f"{limit // kib} KB"
    return f"{limit} bytes"


def seconds_text(seconds: float) -> str:
    """``seconds`` for a reason: "5 s", "0.5 s"."""
    return f"{seconds:g} s"


def content_length(value: str | None) -> int | None:
    """The Content-Length header as a number, or None when absent or not a number."""
    if value is None:
        return None
    text = value.strip()
    return int(text) if text.isdigit() else None


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one fetch came to: the picture's bytes and type, or the verdict why there are none."""

    data: bytes | None = None
    content_type: str = ""
    verdict: Verdict | None = None

    @property
    def status(self) -> Literal["ok", "refused", "failed"]:
        """ "ok" when there are bytes, else the verdict's status."""
        return "ok" if self.verdict is None else self.verdict.status

    @property
    def kind(self) -> str:
        """ "ok", or the verdict's kind (a metric label)."""
        return "ok" if self.verdict is None else self.verdict.kind

    def media(self, uuid: str) -> Media:
        """The :class:`~rules.media.Media` handed to the scan for ``uuid``."""
        if self.verdict is not None:
            return Media(uuid, None, self.verdict.reason)
        return Media(uuid, self.data, "", self.content_type)


def outcome_of(verdict: Verdict) -> Outcome:
    """The outcome of a picture not handed on."""
    return Outcome(verdict=verdict)
