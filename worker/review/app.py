"""The review page's web app (Starlette): sign in with the review token, list plans, open one, decide.

Authentication: the token is exchanged once for an HttpOnly, SameSite=Strict session cookie holding a
random session id (never the token) that the server keeps for 8 hours or until the moderator signs out;
``Authorization: Bearer <token>`` works too. The cookie is ``Secure`` when the request came over https, or
always / never by the ``secure_cookie`` setting (``RECALL_REVIEW_SECURE_COOKIE``: ``true`` behind a proxy
that terminates TLS). Every form (decisions, sign-out) carries a CSRF value derived from the token.

One decision form per plan: one name, one note, and the decisions the plan can take now (approve / reject
a pending plan, reopen a rejected one). Approving queues the plan's apply job; a moderator may untick
messages to approve a subset (not of a wipe plan, one call for the whole sender): the deselected ones count
as rejected (see :meth:`worker.ledger.store.Ledger.decide_plan`).

Flash messages (what a decision did) are kept on the server under a random, single-use id that expires
within minutes; the URL carries only that id, so a crafted ``?flash=`` shows nothing. Sessions and flashes
live in this process's memory: a restart signs everyone out, and the page is served by one process.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from worker import plans
from worker.intake.store import IntakeStore
from worker.ledger.store import Ledger, PlanStateError, PlanView
from worker.queues import Queues
from worker.review import render

COOKIE = "recall_review"
SESSION_S = 8 * 3600
FLASH_S = 120  # a flash not shown within this long is dropped
MAX_FLASHES = 1000
MAX_FORM_BYTES = 16 * 1024
DECISIONS = ("approve", "reject", "reopen")
RECENT_REJECTED = 20  # rejected plans listed on the index page, for a moderator to reopen
SecureCookie = Literal["auto", "true", "false"]
NO_STORE = {"Cache-Control": "no-store"}


async def _form(request: Request) -> list[tuple[str, str]]:
    """A URL-encoded form (the only kind these pages post), as (name, value) pairs in order."""
    body = await request.body()
    return parse_qsl(body[:MAX_FORM_BYTES].decode("utf-8", "replace"), keep_blank_values=True)


def _derive(token: str, purpose: str) -> str:
    return hmac.new(token.encode(), purpose.encode(), hashlib.sha256).hexdigest()


def _html(content: str, status_code: int = 200) -> HTMLResponse:
    return HTMLResponse(content, status_code=status_code, headers=NO_STORE)


class _Expiring:
    """Random ids with an expiry (and a value), kept in memory."""

    def __init__(self, ttl_s: float, limit: int | None = None) -> None:
        self._ttl_s, self._limit = ttl_s, limit
        self._entries: dict[str, tuple[float, str]] = {}

    def add(self, value: str = "") -> str:
        moment = time.monotonic()
        self._entries = {k: v for k, v in self._entries.items() if v[0] > moment}
        if self._limit is not None and len(self._entries) >= self._limit:
            self._entries.pop(next(iter(self._entries)))  # the oldest
        key = secrets.token_urlsafe(32)
        self._entries[key] = (moment + self._ttl_s, value)
        return key

    def get(self, key: str) -> str | None:
        entry = self._entries.get(key)
        if entry is None or entry[0] <= time.monotonic():
            return None
        return entry[1]

    def pop(self, key: str) -> str | None:
        value = self.get(key)
        self._entries.pop(key, None)
        return value


def _decision(
    ledger: Ledger,
    queues: Queues,
    plan_id: int,
    action: str,
    *,
    by: str,
    note: str | None,
    only: list[str] | None,
) -> str:
    """Take ``action`` on the plan; returns the flash saying what it did."""
    if action == "approve":
        job = plans.approve(ledger, queues, plan_id, by=by, note=note, only=only)
        return f"Approved; {job.job_id} queued: {plans.what_approval_does(ledger.plan(plan_id))}"
    if action == "reject":
        plans.reject(ledger, plan_id, by=by, note=note)
        return "Rejected; nothing of this plan will be recalled, by it or by a later job."
    plans.reopen(ledger, plan_id, by=by, note=note)
    return "Reopened; the plan waits for review again and its messages are no longer held back."


def _reports_by_job(intake: IntakeStore, listed: list[PlanView]) -> dict[str, list[dict[str, Any]]]:
    """The intake reports of the listed plans' jobs (only jobs that name reports: the intake's)."""
    named = {plan.job_id for plan in listed if plan.job.get("report", {}).get("reports")}
    return intake.reports_of_jobs(sorted(named))


def build_review_app(
    ledger: Ledger,
    queues: Queues,
    token: str,
    *,
    secure_cookie: SecureCookie = "auto",
    intake: IntakeStore | None = None,
) -> Starlette:
    """The review app over ``ledger``; decisions queue apply jobs on ``queues``. A plan's job that came from
    the report intake shows its reports, read from ``intake`` (by default the intake's tables in the
    ledger's database)."""
    reports = intake if intake is not None else IntakeStore(ledger.engine)
    csrf_value = _derive(token, "csrf")
    sessions = _Expiring(SESSION_S)
    flashes = _Expiring(FLASH_S, MAX_FLASHES)

    def secure(request: Request) -> bool:
        return secure_cookie == "true" or (secure_cookie == "auto" and request.url.scheme == "https")

    def signed_in(request: Request) -> bool:
        cookie = request.cookies.get(COOKIE, "")
        bearer = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        return (bool(cookie) and sessions.get(cookie) is not None) or (
            bool(bearer) and hmac.compare_digest(bearer, token)
        )

    def guarded(
        handler: Callable[[Request], Awaitable[Response]],
    ) -> Callable[[Request], Awaitable[Response]]:
        async def check(request: Request) -> Response:
            if not signed_in(request):
                return RedirectResponse("/login", status_code=303)
            return await handler(request)

        return check

    def flash_of(request: Request) -> str:
        return flashes.pop(request.query_params.get("flash", "")) or ""

    def refused(status_code: int, message: str) -> Response:
        return _html(render.page("Refused", f"<p>{render.e(message)}</p>", csrf_value), status_code)

    async def login(request: Request) -> Response:
        if request.method == "GET":
            return _html(render.login_page())
        given = dict(await _form(request)).get("token", "")
        if not hmac.compare_digest(given, token):
            return _html(render.login_page("That token is not valid."), status_code=401)
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(
            COOKIE,
            sessions.add(),
            httponly=True,
            samesite="strict",
            max_age=SESSION_S,
            secure=secure(request),
        )
        return response

    async def logout(request: Request) -> Response:
        if not hmac.compare_digest(dict(await _form(request)).get("csrf", ""), csrf_value):
            return refused(403, "Stale form; reload the page.")
        sessions.pop(request.cookies.get(COOKIE, ""))
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE, httponly=True, samesite="strict", secure=secure(request))
        return response

    async def index(request: Request) -> Response:
        pending = ledger.list_plans("pending")
        rejected = ledger.list_plans("rejected", limit=RECENT_REJECTED)
        filed = _reports_by_job(reports, pending + rejected)
        return _html(render.plans_page(pending, flash_of(request), rejected, csrf=csrf_value, reports=filed))

    async def show(request: Request) -> Response:
        try:
            plan = ledger.plan(int(request.path_params["plan_id"]))
        except PlanStateError:
            return _html(render.page("Not found", "<p>No such plan.</p>", csrf_value), status_code=404)
        filed = reports.reports_of_job(plan.job_id)
        return _html(render.plan_page(plan, csrf_value, flash_of(request), filed))

    async def decide(request: Request) -> Response:
        plan_id = int(request.path_params["plan_id"])
        action = request.path_params["action"]
        if action not in DECISIONS:
            return _html(render.page("Not found", "<p>No such decision.</p>", csrf_value), status_code=404)
        fields = await _form(request)
        form = dict(fields)
        if not hmac.compare_digest(form.get("csrf", ""), csrf_value):
            return refused(403, "Stale form; reload the page.")
        by = form.get("by", "").strip()[:64]
        note = form.get("note", "").strip()[:500] or None
        if not by:
            return refused(400, "Say who decides.")
        # The form of a plan that offers a choice of messages says so: then the ticked ones are the choice.
        only = [value for name, value in fields if name == "msg"] if "subset" in form else None
        try:
            flash = _decision(ledger, queues, plan_id, action, by=by, note=note, only=only)
        except PlanStateError as exc:
            return refused(409, str(exc))
        return RedirectResponse(f"/plans/{plan_id}?flash={flashes.add(flash)}", status_code=303)

    return Starlette(
        routes=[
            Route("/login", login, methods=["GET", "POST"]),
            Route("/logout", guarded(logout), methods=["POST"]),
            Route("/", guarded(index)),
            Route("/plans/{plan_id:int}", guarded(show)),
            Route("/plans/{plan_id:int}/{action:str}", guarded(decide), methods=["POST"]),
        ]
    )
