"""The review page: signing in and out, cookies, escaping, CSRF, server-side flashes, an intake job's
reporters and their trust, and a moderator's approval (whole or a subset) in a real headless Chromium."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as until
from selenium.webdriver.support.wait import WebDriverWait
from sqlalchemy import update

from tests.conftest import make_client
from tests.intake.reports import incoming
from tests.keyword_rules import KeywordRuleSet, StaticRules
from tests.ledger.helpers import make_job, record, scanned, start
from tests.ledger.test_ledger import c2c_job, recalled, seed
from tests.worker.groups import group_job, new_group, recalled_seqs, sent_by
from tests.worker.harness import ThreadWorker, wait_results, worker_settings
from worker.config import Settings
from worker.emulator.seed import import_accounts, import_group_messages, text
from worker.emulator.server import EmulatorThread
from worker.intake.store import IntakeStore, Timing
from worker.intake.trust import Policy
from worker.jobs import Job, parse_job
from worker.ledger import open_ledger
from worker.ledger.models import EvidenceRow
from worker.ledger.store import Ledger
from worker.queues import Queues
from worker.results import JobResult
from worker.review.app import COOKIE, SecureCookie, build_review_app
from worker.review.render import conversation_words
from worker.review.server import ReviewThread

TOKEN = "review-token-for-tests"
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


@pytest.fixture
def review_settings(emulator: EmulatorThread, tmp_path: Path) -> Settings:
    return worker_settings(
        f"sqlite:///{tmp_path}/queue.db",
        emulator.url,
        database_url=f"sqlite:///{tmp_path}/ledger.db",
        review_token=TOKEN,
    )


@pytest.fixture
def pending_plan(review_settings: Settings, emulator: EmulatorThread) -> tuple[int, list[str]]:
    """A dry-run report of eve's spam (and a message trying to inject markup), stored as a plan."""
    keys = seed(
        emulator.url,
        [("eve", "bob")],
        [(0, "a", "buy spam <script>alert(1)</script> now"), (0, "a", "hello bob"), (0, "a", "more spam")],
    )
    queues = Queues(review_settings)
    queues.submit(
        [c2c_job("preview-eve", "eve", "bob", mode="dry_run", report={"reporter": "bob", "reason": "spam"})]
    )
    with ThreadWorker(review_settings, StaticRules()):
        [result] = wait_results(queues, 1)
    return result["plan_ids"]["dry_run"], [keys[0], keys[2]]


@pytest.fixture
def review(review_settings: Settings) -> Iterator[ReviewThread]:
    with ReviewThread(review_settings) as server:
        yield server


def test_pages_need_the_token(review: ReviewThread) -> None:
    with httpx.Client(base_url=review.url) as client:
        assert client.get("/").headers["location"] == "/login"
        assert client.post("/login", data={"token": "wrong"}).status_code == 401
        signed = client.post("/login", data={"token": TOKEN})
        assert signed.status_code == 303
        cookie = signed.cookies["recall_review"]
        assert TOKEN not in cookie, "the cookie holds a derived value, never the token"
        assert client.get("/").status_code == 200
    assert httpx.get(f"{review.url}/", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200


def test_evidence_is_escaped_and_decisions_need_the_form_token(
    review: ReviewThread, pending_plan: tuple[int, list[str]]
) -> None:
    plan_id, _ = pending_plan
    headers = {"Authorization": f"Bearer {TOKEN}"}
    page = httpx.get(f"{review.url}/plans/{plan_id}", headers=headers).text
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<mark>spam</mark>" in page
    forged = httpx.post(
        f"{review.url}/plans/{plan_id}/approve", headers=headers, data={"by": "x", "csrf": "nope"}
    )
    assert forged.status_code == 403


def csrf_of(page: str) -> str:
    """The CSRF value of the first decision form on ``page``."""
    marker = "name=csrf value='"
    start = page.index(marker) + len(marker)
    return page[start : page.index("'", start)]


def test_a_rejected_plan_can_be_reopened_with_the_same_protections(
    review: ReviewThread, review_settings: Settings
) -> None:
    ledger = open_ledger(review_settings.database_url)
    try:
        job_pk, ids = record(ledger, make_job("preview-1", mode="dry_run"), ["m1", "m2"])
        plan_id = ledger.create_plan(job_pk, "dry_run", ids.values())
    finally:
        ledger.dispose()
    with httpx.Client(base_url=review.url) as client:
        client.post("/login", data={"token": TOKEN})
        page = client.get(f"/plans/{plan_id}").text
        assert "id=reopen" not in page
        csrf = csrf_of(page)
        refused = client.post(f"/plans/{plan_id}/reopen", data={"by": "carol", "csrf": csrf})
        assert refused.status_code == 409 and "not rejected" in refused.text
        rejected = client.post(f"/plans/{plan_id}/reject", data={"by": "alice", "csrf": csrf})
        assert rejected.status_code == 303
        page = client.get(f"/plans/{plan_id}").text
        assert "id=reopen" in page and "id=approve" not in page
        assert client.post(f"/plans/{plan_id}/reopen", data={"by": "carol"}).status_code == 403
        forged = client.post(f"/plans/{plan_id}/reopen", data={"by": "carol", "csrf": "nope"})
        assert forged.status_code == 403
        assert client.post(f"/plans/{plan_id}/reopen", data={"csrf": csrf}).status_code == 400
        assert client.post(f"/plans/{plan_id}/unknown", data={"by": "x", "csrf": csrf}).status_code == 404
    outsider = httpx.post(f"{review.url}/plans/{plan_id}/reopen", data={"by": "carol", "csrf": csrf})
    assert outsider.status_code == 303 and outsider.headers["location"] == "/login"
    ledger = open_ledger(review_settings.database_url)
    try:
        assert ledger.plan(plan_id).status == "rejected"
        assert len(ledger.rejected_messages(ids.values())) == 2
    finally:
        ledger.dispose()
    with httpx.Client(base_url=review.url) as client:
        client.post("/login", data={"token": TOKEN})
        reopened = client.post(
            f"/plans/{plan_id}/reopen", data={"by": "carol", "note": "look again", "csrf": csrf}
        )
        assert reopened.status_code == 303
        page = client.get(reopened.headers["location"]).text
        assert "Reopened" in page and "id=approve" in page and "id=reopen" not in page
    ledger = open_ledger(review_settings.database_url)
    try:
        assert ledger.plan(plan_id).status == "pending"
        assert ledger.rejected_messages(ids.values()) == {}
    finally:
        ledger.dispose()


def test_a_plan_whose_evidence_was_purged_is_not_offered_for_approval(
    review: ReviewThread, review_settings: Settings
) -> None:
    ledger = open_ledger(review_settings.database_url)
    try:
        job_pk, ids = record(ledger, make_job("preview-1", mode="dry_run"), ["m1"])
        plan_id = ledger.create_plan(job_pk, "dry_run", ids.values())
        with ledger.session() as session, session.begin():
            session.execute(
                update(EvidenceRow).values(body=None, cloud_custom_data=None, purged_at=datetime.now(UTC))
            )
    finally:
        ledger.dispose()
    headers = {"Authorization": f"Bearer {TOKEN}"}
    page = httpx.get(f"{review.url}/plans/{plan_id}", headers=headers).text
    assert "id=approve" not in page and "id=reject" in page
    assert "evidence" in page and "cannot be approved" in page
    approved = httpx.post(
        f"{review.url}/plans/{plan_id}/approve", headers=headers, data={"by": "ann", "csrf": csrf_of(page)}
    )
    assert approved.status_code == 409 and "evidence" in approved.text


def close_into_job(intake: IntakeStore, ledger: Ledger, policy: Policy | None = None) -> tuple[Job, int]:
    """Close the intake's due case into its job and start that job in the ledger: (job, job row id)."""
    [job_id] = intake.close_due(policy or Policy(), lookback_s=3600, ruleset="default")
    [(pk, body)] = [(pk, body) for pk, listed, body in intake.unpublished() if listed == job_id]
    intake.mark_published([pk])
    job = parse_job(body)
    return job, start(ledger, job)


def settle(intake: IntakeStore, ledger: Ledger, *, upheld: bool) -> None:
    """Close the due case, run its job to the end (recalling a message, or finding nothing) and settle it."""
    job, job_pk = close_into_job(intake, ledger)
    result = JobResult(job_id=job.job_id, status="done", recalled=["10"] if upheld else [])
    ledger.settle_job(
        job_pk, status="done", result=result.to_json(), error=None, scanned=9, pages=1, dead_reason=None
    )
    intake.track(webhook=False, notices=False)


def get_page(ledger: Ledger, path: str, tmp_path: Path) -> str:
    """``path`` of the review app over ``ledger`` (the intake's reports read from its database), as a
    signed-in moderator."""
    settings = worker_settings(f"sqlite:///{tmp_path}/queue.db", "http://127.0.0.1:9", review_token=TOKEN)
    app = build_review_app(ledger, Queues(settings), TOKEN)

    async def fetch() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            return await client.get(path, headers={"Authorization": f"Bearer {TOKEN}"})

    response = asyncio.run(fetch())
    assert response.status_code == 200, response.text
    return response.text


def test_an_intake_jobs_plan_shows_its_reporters_and_their_trust(ledger: Ledger, tmp_path: Path) -> None:
    intake = IntakeStore(ledger.engine, timing=Timing(quiet_s=0, max_wait_s=0))
    intake.write_batch([incoming(reporter="alice", msg_seqs=[10])])
    settle(intake, ledger, upheld=True)
    intake.write_batch([incoming(reporter="bob", msg_seqs=[11])])
    settle(intake, ledger, upheld=False)
    intake.write_batch(
        [
            incoming(reporter="alice", msg_seqs=[12], description='spam again <script>alert("x")</script>'),
            incoming(reporter="bob", msg_seqs=[13], category="scam"),
            incoming(reporter="carol", msg_seqs=[14], description="y" * 1000),
        ]
    )
    job, job_pk = close_into_job(intake, ledger, Policy(low_trust=0.9, agree=5))
    assert job.mode == "dry_run"
    ids = ledger.record_scan(job_pk, job, [scanned("12", sender="spammer"), scanned("14", sender="spammer")])
    plan_id = ledger.create_plan(job_pk, "dry_run", ids.values())
    other_pk, other_ids = record(ledger, make_job("preview-1", mode="dry_run"), ["m1"])
    other_plan = ledger.create_plan(other_pk, "dry_run", other_ids.values())

    page = get_page(ledger, f"/plans/{plan_id}", tmp_path)
    assert "id=reporters" in page and "3 report(s)" in page
    assert "<td>alice</td><td>spam</td><td class=trust>0.67 (1 upheld, 0 baseless)</td>" in page
    assert "<td>bob</td><td>scam</td><td class=trust>0.33 (0 upheld, 1 baseless)</td>" in page
    assert "<td>carol</td><td>spam</td><td class=trust>0.50 (0 upheld, 0 baseless)</td>" in page
    assert "<script>" not in page
    assert "spam again &lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    assert "y" * 499 + "\u2026" in page and "y" * 500 not in page, "the description is bounded"

    other = get_page(ledger, f"/plans/{other_plan}", tmp_path)
    assert "id=reporters" not in other and "class=trust" not in other and "report(s)" not in other
    index = get_page(ledger, "/", tmp_path)
    assert "3 report(s); trust alice 0.67, bob 0.33, carol 0.50" in index
    assert index.count("class=reporters") == 1, "nothing new in the row of a job not from the intake"


@pytest.mark.parametrize(
    ("base_url", "setting", "secure"),
    [
        ("http://testserver", "auto", False),
        ("https://testserver", "auto", True),
        ("http://testserver", "true", True),
        ("https://testserver", "false", False),
    ],
)
def test_the_session_cookie_is_secure_by_the_request_scheme_or_the_setting(
    review_settings: Settings, base_url: str, setting: SecureCookie, secure: bool
) -> None:
    ledger = open_ledger(review_settings.database_url)
    app = build_review_app(ledger, Queues(review_settings), TOKEN, secure_cookie=setting)

    async def sign_in() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base_url) as client:
            return await client.post("/login", data={"token": TOKEN})

    try:
        signed = asyncio.run(sign_in())
    finally:
        ledger.dispose()
    assert signed.status_code == 303
    attributes = [a.strip().lower() for a in signed.headers["set-cookie"].split(";")]
    assert ("secure" in attributes) is secure, attributes
    assert "httponly" in attributes and "samesite=strict" in attributes


def test_signing_out_ends_the_session_on_the_server(review: ReviewThread) -> None:
    with httpx.Client(base_url=review.url) as client:
        client.post("/login", data={"token": TOKEN})
        session = client.cookies[COOKIE]
        page = client.get("/").text
        assert "id=logout" in page
        assert client.post("/logout", data={"csrf": "nope"}).status_code == 403
        out = client.post("/logout", data={"csrf": csrf_of(page)})
        assert out.status_code == 303 and out.headers["location"] == "/login"
        assert COOKIE not in client.cookies
    # The old cookie, replayed, no longer signs anyone in.
    replayed = httpx.get(f"{review.url}/", cookies={COOKIE: session})
    assert replayed.status_code == 303 and replayed.headers["location"] == "/login"


def test_conversations_are_shown_in_words() -> None:
    assert conversation_words({"type": "c2c", "operator": "user2", "peer": "user1"}) == (
        "one-to-one user2/user1, seen by user2"
    )
    assert conversation_words({"type": "official_account", "account": "@TOA#_news"}) == (
        "official account @TOA#_news"
    )
    assert conversation_words({"type": "group", "group_id": "@TGS#1", "topic_id": None}) == "group @TGS#1"
    assert conversation_words(
        {"type": "group", "group_id": "@TGS#1", "topic_id": "@TGS#_@TGS#1@TOPIC#_t"}
    ) == ("group @TGS#1 (topic @TGS#_@TGS#1@TOPIC#_t)")


def test_a_wipe_plan_is_approved_whole_or_not_at_all(review: ReviewThread, review_settings: Settings) -> None:
    ledger = open_ledger(review_settings.database_url)
    try:
        job_pk, ids = record(ledger, make_job("preview-1", mode="dry_run"), ["m1", "m2"])
        plan_id = ledger.create_plan(job_pk, "wipe", ids.values())
    finally:
        ledger.dispose()
    headers = {"Authorization": f"Bearer {TOKEN}"}
    page = httpx.get(f"{review.url}/plans/{plan_id}", headers=headers).text
    assert "type=checkbox" not in page and "name=subset" not in page
    partial = httpx.post(
        f"{review.url}/plans/{plan_id}/approve",
        headers=headers,
        data={"by": "ann", "csrf": csrf_of(page), "subset": "1", "msg": "m1"},
    )
    assert partial.status_code == 409 and "wipe" in partial.text
    ledger = open_ledger(review_settings.database_url)
    try:
        assert ledger.plan(plan_id).status == "pending"
    finally:
        ledger.dispose()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    """A headless Chromium driven by ChromeDriver (required under CI, else skipped when missing)."""
    if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
        if os.environ.get("CI") == "true":
            pytest.fail(
                "Chromium and ChromeDriver (Debian packages chromium, chromium-driver) are needed under CI"
            )
        pytest.skip("Chromium and ChromeDriver (Debian packages chromium, chromium-driver) are not installed")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        "--window-size=1200,1000",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def open_plan(browser: WebDriver, review_url: str, plan_id: int) -> WebDriverWait[WebDriver]:
    """Sign in, follow the index's only plan link (``plan_id``), and wait for the approve button.

    Returns the wait to use after further clicks: a click that navigates returns before the next page
    has loaded, so each step waits for what that page must show.
    """
    wait = WebDriverWait(browser, timeout=20)
    browser.get(f"{review_url}/")
    browser.find_element(By.ID, "token").send_keys(TOKEN)
    browser.find_element(By.ID, "sign-in").click()
    link = wait.until(until.presence_of_element_located((By.CSS_SELECTOR, "#plans a.plan-link")))
    assert link.text == f"plan {plan_id}"
    link.click()
    wait.until(until.presence_of_element_located((By.ID, "approve")))
    return wait


def approve_in_browser(browser: WebDriver, wait: WebDriverWait[WebDriver], by: str) -> str:
    """Approve the open plan as ``by``; returns the flash the page shows afterwards."""
    browser.find_element(By.ID, "by").send_keys(by)
    browser.find_element(By.ID, "approve").click()
    wait.until(until.text_to_be_present_in_element((By.ID, "flash"), "Approved"))
    assert browser.find_element(By.ID, "status").text == "approved"
    return str(browser.find_element(By.ID, "flash").text)


def shown_keys(browser: WebDriver) -> list[str]:
    """The MsgKeys of the messages the open plan shows."""
    return sorted(
        str(e.get_attribute("data-msg-key")) for e in browser.find_elements(By.CSS_SELECTOR, ".msg")
    )


@pytest.mark.slow
def test_a_moderator_approves_a_plan_in_the_browser_and_exactly_its_messages_are_recalled(
    review: ReviewThread,
    review_settings: Settings,
    emulator: EmulatorThread,
    pending_plan: tuple[int, list[str]],
    browser: WebDriver,
    tmp_path: Path,
) -> None:
    plan_id, planned = pending_plan
    wait = open_plan(browser, review.url, plan_id)
    marks = [m.text for m in browser.find_elements(By.TAG_NAME, "mark")]
    assert "spam" in marks
    assert shown_keys(browser) == sorted(planned)
    screenshot = tmp_path / "review-plan.png"
    assert browser.save_screenshot(str(screenshot))
    assert screenshot.stat().st_size > 10_000
    approve_in_browser(browser, wait, "moderator-ann")
    queues = Queues(review_settings)
    with ThreadWorker(review_settings, StaticRules()):
        [applied] = wait_results(queues, 1)
    assert applied["job_id"] == f"plan-{plan_id}-apply"
    assert sorted(applied["recalled"]) == sorted(planned)
    assert recalled(emulator.url, "eve", "bob") == set(planned)
    ledger = open_ledger(review_settings.database_url)
    try:
        assert ledger.plan(plan_id).status == "applied"
        assert ledger.plan(plan_id).decided_by == "moderator-ann"
    finally:
        ledger.dispose()


@pytest.fixture
def pending_wipe(review_settings: Settings, emulator: EmulatorThread) -> tuple[str, int, list[int]]:
    """mallory invites a group into a scam group: the group job recalls that and proposes a wipe plan.

    Returns the group, the plan and the seqs it lists (mallory's live messages in the window).
    """
    t0 = int(time.time()) - 3600

    async def seed_group() -> tuple[str, list[int]]:
        async with make_client(emulator.url) as client:
            await import_accounts(client, ["carol", "henry", "mallory"])
            group, _ = await new_group(
                client, emulator.url, owner="carol", members=["henry", "mallory"], created_at=t0 - 300
            )
            sent = await import_group_messages(
                client,
                group_id=group,
                messages=[
                    ("mallory", t0 - 100, 1, [text("hi everyone")]),  # before the window
                    ("mallory", t0 + 10, 2, [text("Join my VIP signals group <b>now</b>")]),
                    ("henry", t0 + 20, 3, [text("no thanks, no vip signals group for me")]),
                    ("mallory", t0 + 30, 4, [text("nice hike today")]),
                    ("mallory", t0 + 40, 5, [text("see you saturday")]),
                ],
            )
            return group, sent

    group, sent = asyncio.run(seed_group())
    queues = Queues(review_settings)
    report = {"reporter": "henry", "reason": "scam", "msg_seqs": [sent[1]]}
    queues.submit([group_job("group-scam", group, suspect="mallory", window=(t0, t0 + 600), report=report)])
    with ThreadWorker(review_settings, StaticRules(KeywordRuleSet(wipe=("vip signals group",)))):
        [result] = wait_results(queues, 1)
    assert result["recalled"] == [str(sent[1])] and set(result["plan_ids"]) == {"wipe"}, result
    return group, result["plan_ids"]["wipe"], [sent[1], sent[3], sent[4]]


@pytest.mark.slow
def test_a_moderator_is_warned_of_a_wipe_and_approving_it_wipes_the_suspect(
    review: ReviewThread,
    review_settings: Settings,
    emulator: EmulatorThread,
    pending_wipe: tuple[str, int, list[int]],
    browser: WebDriver,
) -> None:
    group, plan_id, listed = pending_wipe
    wait = open_plan(browser, review.url, plan_id)
    warning = browser.find_element(By.ID, "wipe-warning")
    assert warning.is_displayed()
    assert "mallory" in warning.text
    assert "delete_group_msg_by_sender" in warning.text
    assert f"the {len(listed)} message(s) of mallory" in warning.text
    assert shown_keys(browser) == sorted(str(seq) for seq in listed)
    assert "<b>now</b>" in browser.find_element(By.CSS_SELECTOR, f".msg[data-msg-key='{listed[0]}']").text
    assert browser.find_element(By.ID, "approve").text == "Approve the wipe of mallory's messages"
    assert browser.find_elements(By.CSS_SELECTOR, "input.pick") == [], "a wipe is approved whole"
    flash = approve_in_browser(browser, wait, "moderator-ann")
    assert f"plan-{plan_id}-apply queued: it wipes every message mallory sent" in flash
    assert "exactly these messages" not in flash
    queues = Queues(review_settings)
    with ThreadWorker(review_settings, StaticRules()):
        [applied] = wait_results(queues, 1)
    assert applied["job_id"] == f"plan-{plan_id}-apply"
    assert applied["status"] == "done", applied
    assert sorted(int(seq) for seq in applied["wiped"]) == listed[1:]
    assert applied["api_calls"]["delete_group_msg_by_sender"] == 1
    mallory = sent_by(emulator.url, group, "mallory")
    assert len(mallory) == len(listed) + 1, "and one before the window"
    assert recalled_seqs(emulator.url, group) == mallory, "every message of mallory's, nothing else"
    ledger = open_ledger(review_settings.database_url)
    try:
        plan = ledger.plan(plan_id)
        assert (plan.status, plan.decided_by) == ("applied", "moderator-ann")
        [record] = ledger.audit(f"plan-{plan_id}-apply")["wipes"]
        assert (record["sender"], record["listed"], record["recalled"], record["missed"]) == (
            "mallory",
            2,
            2,
            0,
        )
    finally:
        ledger.dispose()


@pytest.mark.slow
def test_the_plan_list_shows_the_conversation_and_a_crafted_flash_shows_nothing(
    review: ReviewThread, review_settings: Settings, browser: WebDriver
) -> None:
    ledger = open_ledger(review_settings.database_url)
    try:
        job_pk, ids = record(ledger, make_job("preview-1", mode="dry_run"), ["m1", "m2", "m3"])
        plan_id = ledger.create_plan(job_pk, "dry_run", ids.values())
    finally:
        ledger.dispose()
    wait = WebDriverWait(browser, timeout=20)
    browser.get(f"{review.url}/login")
    browser.find_element(By.ID, "token").send_keys(TOKEN)
    browser.find_element(By.ID, "sign-in").click()
    row = wait.until(until.presence_of_element_located((By.CSS_SELECTOR, "#plans tr:nth-child(2)")))
    assert row.find_element(By.CSS_SELECTOR, "td.conversation").text == "one-to-one bob/eve, seen by bob"
    assert row.find_element(By.CSS_SELECTOR, "td.count").text == "3"
    crafted = "Approved; plan-1-apply queued: call +1-555-0100 to confirm"
    for path in ("/", f"/plans/{plan_id}"):
        browser.get(f"{review.url}{path}?flash={crafted}")
        wait.until(until.presence_of_element_located((By.ID, "logout")))
        assert browser.find_elements(By.CSS_SELECTOR, ".flash") == []
        assert "555-0100" not in browser.page_source
    assert "one-to-one bob/eve, seen by bob" in browser.find_element(By.ID, "conversation").text
    assert "'type'" not in browser.page_source, "no Python dict in the header"
    # A genuine flash, from the server, shows once.
    browser.find_element(By.ID, "by").send_keys("moderator-ann")
    browser.find_element(By.ID, "reject").click()
    wait.until(until.text_to_be_present_in_element((By.ID, "flash"), "Rejected"))
    assert browser.find_element(By.ID, "status").text == "rejected"
    browser.refresh()
    wait.until(until.presence_of_element_located((By.ID, "reopen")))
    assert browser.find_elements(By.ID, "flash") == []
    # Signing out: every page sends the browser to the sign-in page again.
    browser.find_element(By.ID, "logout").click()
    wait.until(until.presence_of_element_located((By.ID, "sign-in")))
    for path in ("/", f"/plans/{plan_id}"):
        browser.get(f"{review.url}{path}")
        wait.until(until.presence_of_element_located((By.ID, "sign-in")))
        assert browser.current_url == f"{review.url}/login"
    assert browser.get_cookie(COOKIE) is None


@pytest.mark.slow
def test_a_moderator_approves_a_subset_and_exactly_it_is_recalled(
    review: ReviewThread,
    review_settings: Settings,
    emulator: EmulatorThread,
    pending_plan: tuple[int, list[str]],
    browser: WebDriver,
) -> None:
    plan_id, planned = pending_plan
    kept, chosen = planned  # the first (with the markup) is left out
    wait = open_plan(browser, review.url, plan_id)
    boxes = browser.find_elements(By.CSS_SELECTOR, ".msg input.pick")
    assert len(boxes) == 2 and all(box.is_selected() for box in boxes)
    browser.find_element(By.CSS_SELECTOR, f".msg[data-msg-key='{kept}'] input.pick").click()
    flash = approve_in_browser(browser, wait, "moderator-ann")
    assert "exactly the 1 selected message(s); the 1 left out count as rejected" in flash
    assert browser.find_elements(By.CSS_SELECTOR, "input.pick") == []
    assert "deselected" in browser.find_element(By.CSS_SELECTOR, f".msg[data-msg-key='{kept}']").text
    queues = Queues(review_settings)
    with ThreadWorker(review_settings, StaticRules()):
        [applied] = wait_results(queues, 1)
    assert applied["job_id"] == f"plan-{plan_id}-apply"
    assert applied["recalled"] == [chosen]
    assert recalled(emulator.url, "eve", "bob") == {chosen}
    ledger = open_ledger(review_settings.database_url)
    try:
        plan = ledger.plan(plan_id)
        assert (plan.status, plan.decided_by, plan.deselected) == ("applied", "moderator-ann", [kept])
        assert {i.msg_key: i.approved for i in plan.items} == {kept: False, chosen: True}
        [audited] = ledger.audit("preview-eve")["plans"]
        assert (audited["approved"], audited["deselected"]) == ([chosen], [kept])
        messages = {m["msg_key"]: m for m in ledger.audit("preview-eve")["messages"]}
        assert messages[kept]["decision"]["state"] == "rejected_by_moderator"
        assert messages[kept]["decision"]["plan"] == plan_id
        assert "deselected" in messages[kept]["decision"]["note"]
        assert messages[chosen]["decision"] is None
        assert messages[kept]["recall"] is None
    finally:
        ledger.dispose()
