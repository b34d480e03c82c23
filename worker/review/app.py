"""The review page's web app (Starlette): sign in with the review token, list plans, open one, decide.

Authentication: the token is exchanged once for an HttpOnly, SameSite=Strict session cookie (an HMAC of
the token, never the token itself); ``Authorization: Bearer <token>`` works too. Every decision form
carries a CSRF value derived from the token. Approving queues the plan's apply job; a rejected plan can be
reopened (back to review), with the same protections.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from worker import plans
from worker.ledger.store import Ledger, PlanStateError
from worker.queues import Queues
from worker.review import render

COOKIE = "recall_review"
MAX_FORM_BYTES = 16 * 1024
DECISIONS = ("approve", "reject", "reopen")
RECENT_REJECTED = 20  # rejected plans listed on the index page, for a moderator to reopen


async def _form(request: Request) -> dict[str, str]:
    """A URL-encoded form (the only kind these pages post)."""
    body = await request.body()
    return dict(parse_qsl(body[:MAX_FORM_BYTES].decode("utf-8", "replace"), keep_blank_values=True))


def _derive(token: str, purpose: str) -> str:
    return hmac.new(token.encode(), purpose.encode(), hashlib.sha256).hexdigest()


def build_review_app(ledger: Ledger, queues: Queues, token: str) -> Starlette:
    """The review app over ``ledger``; decisions queue apply jobs on ``queues``."""
    session_value = _derive(token, "session")
    csrf_value = _derive(token, "csrf")

    def signed_in(request: Request) -> bool:
        cookie = request.cookies.get(COOKIE, "")
        bearer = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        return hmac.compare_digest(cookie, session_value) or (
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

    async def login(request: Request) -> Response:
        if request.method == "GET":
            return HTMLResponse(render.login_page())
        form = await _form(request)
        given = form.get("token", "")
        if not hmac.compare_digest(given, token):
            return HTMLResponse(render.login_page("That token is not valid."), status_code=401)
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(COOKIE, session_value, httponly=True, samesite="strict", max_age=8 * 3600)
        return response

    async def index(request: Request) -> Response:
        pending = ledger.list_plans("pending")
        rejected = ledger.list_plans("rejected", limit=RECENT_REJECTED)
        return HTMLResponse(render.plans_page(pending, request.query_params.get("flash", ""), rejected))

    async def show(request: Request) -> Response:
        try:
            plan = ledger.plan(int(request.path_params["plan_id"]))
        except PlanStateError:
            return HTMLResponse(render.page("Not found", "<p>No such plan.</p>"), status_code=404)
        return HTMLResponse(render.plan_page(plan, csrf_value, request.query_params.get("flash", "")))

    async def decide(request: Request) -> Response:
        plan_id = int(request.path_params["plan_id"])
        action = request.path_params["action"]
        if action not in DECISIONS:
            return HTMLResponse(render.page("Not found", "<p>No such decision.</p>"), status_code=404)
        form = await _form(request)
        if not hmac.compare_digest(form.get("csrf", ""), csrf_value):
            return HTMLResponse(
                render.page("Refused", "<p>Stale form; reload the page.</p>"), status_code=403
            )
        by = form.get("by", "").strip()[:64]
        note = form.get("note", "").strip()[:500] or None
        if not by:
            return HTMLResponse(render.page("Refused", "<p>Say who decides.</p>"), status_code=400)
        try:
            if action == "approve":
                job = plans.approve(ledger, queues, plan_id, by=by, note=note)
                flash = f"Approved; {job.job_id} queued: {plans.what_approval_does(ledger.plan(plan_id))}"
            elif action == "reject":
                plans.reject(ledger, plan_id, by=by, note=note)
                flash = "Rejected; nothing of this plan will be recalled, by it or by a later job."
            else:
                plans.reopen(ledger, plan_id, by=by, note=note)
                flash = "Reopened; the plan waits for review again and its messages are no longer held back."
        except PlanStateError as exc:
            return HTMLResponse(render.page("Refused", f"<p>{render.e(exc)}</p>"), status_code=409)
        return RedirectResponse(f"/plans/{plan_id}?flash={flash}", status_code=303)

    return Starlette(
        routes=[
            Route("/login", login, methods=["GET", "POST"]),
            Route("/", guarded(index)),
            Route("/plans/{plan_id:int}", guarded(show)),
            Route("/plans/{plan_id:int}/{action:str}", guarded(decide), methods=["POST"]),
        ]
    )
