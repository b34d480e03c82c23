"""HTML of the review page. Pure functions; every piece of message text is escaped before it is shown."""

from __future__ import annotations

import html
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from worker.ledger.store import PlanItem, PlanView

STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:0;background:#f6f7f9;color:#1d2330}
header{background:#1d2330;color:#fff;padding:12px 24px}header a{color:#fff;text-decoration:none}
main{padding:16px 24px;max-width:1100px}table{border-collapse:collapse;width:100%;background:#fff}
th,td{border-bottom:1px solid #e3e6eb;padding:8px;text-align:left;vertical-align:top}
.msg{background:#fff;border:1px solid #e3e6eb;border-radius:6px;padding:12px;margin:12px 0}
.path{color:#6a7385;font:12px ui-monospace,monospace}mark{background:#ffd54a;padding:0 2px}
.badge{display:inline-block;border-radius:10px;padding:1px 8px;font-size:12px;background:#e8ebf0}
.pending{background:#fff1c2}.approved,.applied{background:#d6f5dd}.rejected{background:#f8d7da}
form.decide{display:inline-block;margin-right:16px}
button{padding:6px 14px;border-radius:4px;border:0;cursor:pointer}
button.approve{background:#1f8f4e;color:#fff}button.reject{background:#b3261e;color:#fff}
button.reopen{background:#3d5a99;color:#fff}
input[type=text],input[type=password]{padding:5px;border:1px solid #c5cad3;border-radius:4px}
.flash{background:#d6f5dd;padding:8px 12px;border-radius:4px}.error{background:#f8d7da;padding:8px 12px}
header form{float:right;margin:0}header button{background:#3a4356;color:#fff;padding:2px 10px}
label.pick{display:block;margin-bottom:6px;font-weight:600}.deselected{background:#f8d7da}
.description{white-space:pre-wrap;overflow-wrap:anywhere}.reporters{color:#6a7385;font-size:12px}
"""

REASONS = {
    "dry_run": "dry run (preview)",
    "over_cap": "escalated: over the recall cap",
    "flag_rule_only": "flagged for review by a rule",
    "rule_breaker_tripped": "held: rule's match rate spiked",
    "wipe": "proposed: wipe everything the suspect sent recently in the group",
}


#: The most of a report's description the page shows (the intake accepts up to 1,000 characters).
DESCRIPTION_CHARS = 500
#: The most reporters a row of the plan list names.
LISTED_REPORTERS = 3


def e(value: object) -> str:
    """Escape for HTML text and attribute values."""
    return html.escape(str(value), quote=True)


def page(title: str, body: str, csrf: str | None = None) -> str:
    """A whole page; with ``csrf`` (a signed-in moderator's page), the header has a sign-out button."""
    sign_out = (
        f"<form method=post action='/logout' id=logout-form><input type=hidden name=csrf value='{e(csrf)}'>"
        "<button type=submit id=logout>Sign out</button></form>"
        if csrf
        else ""
    )
    return (
        f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{e(title)}</title>"
        f"<meta name=viewport content='width=device-width'><style>{STYLE}</style></head><body>"
        f"<header>{sign_out}<a href='/'>recall-worker review</a></header><main>{body}</main></body></html>"
    )


def conversation_words(conversation: dict[str, Any]) -> str:
    """A job's conversation in words: ``one-to-one bob/eve, seen by bob``, ``official account @TOA#_x``,
    ``group @TGS#1 (topic @TGS#_…@TOPIC#_t)``."""
    kind = conversation.get("type")
    if kind == "c2c":
        operator, peer = conversation.get("operator"), conversation.get("peer")
        return f"one-to-one {operator}/{peer}, seen by {operator}"
    if kind == "official_account":
        return f"official account {conversation.get('account')}"
    if kind == "group":
        topic = conversation.get("topic_id")
        return f"group {conversation.get('group_id')}" + (f" (topic {topic})" if topic else "")
    return str(conversation)


def login_page(error: str = "") -> str:
    """The sign-in page (with ``error`` shown, if any)."""
    message = f"<p class=error>{e(error)}</p>" if error else ""
    return page(
        "Sign in",
        f"<h1>Sign in</h1>{message}<form method=post action='/login'>"
        "<label>Review token <input type=password name=token id=token autofocus></label> "
        "<button type=submit id=sign-in>Sign in</button></form>",
    )


def _when(epoch: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(epoch))


def trust_words(report: Mapping[str, Any]) -> str:
    """A reporter's trust with its record: ``0.67 (2 upheld, 0 baseless)``."""
    return f"{report['trust']:.2f} ({report['upheld']} upheld, {report['baseless']} baseless)"


def _bounded(text: str, limit: int = DESCRIPTION_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def reporters_section(reports: Sequence[Mapping[str, Any]]) -> str:
    """The reports a plan's job answers (intake jobs): reporter, category, trust and description, one row
    each; nothing for a job without reports."""
    if not reports:
        return ""
    rows = "".join(
        f"<tr class=reporter><td>{e(r['reporter'])}</td><td>{e(r['category'])}</td>"
        f"<td class=trust>{e(trust_words(r))}</td>"
        f"<td class=description>{e(_bounded(r['description'])) if r['description'] else '-'}</td></tr>"
        for r in reports
    )
    return (
        f"<section id=reporters><h2>{len(reports)} report(s)</h2><p>Trust is the share of a reporter's "
        "settled reports that held up (a new reporter scores 0.50).</p>"
        "<table><tr><th>reporter</th><th>category</th><th>trust</th><th>description</th></tr>"
        f"{rows}</table></section>"
    )


def _reporters_line(reports: Sequence[Mapping[str, Any]]) -> str:
    """The plan list's compact form: distinct reporters with their trust, the first few named."""
    trust = {r["reporter"]: r["trust"] for r in reports}
    named = ", ".join(f"{e(who)} {score:.2f}" for who, score in list(trust.items())[:LISTED_REPORTERS])
    more = f" +{len(trust) - LISTED_REPORTERS} more" if len(trust) > LISTED_REPORTERS else ""
    return f"<div class=reporters>{len(reports)} report(s); trust {named}{more}</div>"


def _plan_rows(
    plans: Iterable[PlanView], reports: Mapping[str, Sequence[Mapping[str, Any]]] | None = None
) -> list[str]:
    rows = []
    for plan in plans:
        report = plan.job.get("report", {})
        filed = (reports or {}).get(plan.job_id, ())
        rows.append(
            f"<tr><td><a href='/plans/{plan.id}' class=plan-link>plan {plan.id}</a></td>"
            f"<td><span class='badge {e(plan.status)}'>{e(plan.status)}</span></td>"
            f"<td>{e(REASONS.get(plan.reason, plan.reason))}</td><td>{e(plan.job_id)}</td>"
            f"<td>{e(plan.job['suspect'])}</td>"
            f"<td class=conversation>{e(conversation_words(plan.job['conversation']))}</td>"
            f"<td class=count>{plan.message_count}</td>"
            f"<td>{e(report.get('reporter', '-'))}: {e(report.get('reason', '-'))}"
            f"{_reporters_line(filed) if filed else ''}</td>"
            f"<td>{e(plan.created_at.strftime('%Y-%m-%d %H:%M'))}</td></tr>"
        )
    return rows


def _plan_table(table_id: str, rows: list[str]) -> str:
    return (
        f"<table id={table_id}><tr><th>plan</th><th>status</th><th>why</th><th>job</th><th>suspect</th>"
        "<th>conversation</th><th>messages</th><th>report</th><th>created</th></tr>"
        + "".join(rows)
        + "</table>"
    )


def plans_page(
    plans: Iterable[PlanView],
    flash: str = "",
    rejected: Iterable[PlanView] = (),
    *,
    csrf: str | None = None,
    reports: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
) -> str:
    """The index: plans awaiting review, and the latest rejected ones (which can be reopened).

    ``reports`` maps a job id to the intake reports its job answers (see :func:`reporters_section`)."""
    rows = _plan_rows(plans, reports)
    table = _plan_table("plans", rows) if rows else "<p id=no-plans>Nothing waits for review.</p>"
    rejected_rows = _plan_rows(rejected, reports)
    recent = (
        "<h2>Recently rejected</h2><p>Their messages are held back from every later job until a plan with "
        "them is approved, or the rejected plan is reopened.</p>"
        + _plan_table("rejected-plans", rejected_rows)
        if rejected_rows
        else ""
    )
    notice = f"<p class=flash>{e(flash)}</p>" if flash else ""
    return page("Plans", f"<h1>Plans awaiting review</h1>{notice}{table}{recent}", csrf)


def _content_fields(content: dict[str, Any], base: str, kind: str) -> Iterator[tuple[str, str, str]]:
    for name, value in content.items():
        if isinstance(value, str) and value:
            yield f"{base}.{name}", kind, value
        elif name == "AbstractList" and isinstance(value, list):
            yield from (
                (f"{base}.AbstractList[{n}]", kind, v) for n, v in enumerate(value) if isinstance(v, str)
            )
        elif name == "ImageInfoArray" and isinstance(value, list):
            for n, info in enumerate(value):
                if isinstance(info, dict) and isinstance(info.get("URL"), str):
                    yield f"{base}.ImageInfoArray[{n}].URL", kind, info["URL"]
        elif name == "MsgList" and isinstance(value, list):
            for n, inner in enumerate(value):
                if isinstance(inner, dict):
                    yield from text_fields(inner.get("MsgBody"), f"{base}.MsgList[{n}].MsgBody")


def text_fields(body: Any, prefix: str = "MsgBody") -> Iterator[tuple[str, str, str]]:
    """(element path, element type, text) of every text-bearing field, nested forwarded messages included."""
    if not isinstance(body, list):
        return
    for index, element in enumerate(body):
        content = element.get("MsgContent") if isinstance(element, dict) else None
        if isinstance(content, dict):
            yield from _content_fields(
                content, f"{prefix}[{index}].MsgContent", str(element.get("MsgType", ""))
            )


def highlight(text: str, spans: Iterable[str]) -> str:
    """``text`` escaped, with every occurrence of each span wrapped in ``<mark>``."""
    marks: list[tuple[int, int]] = []
    for span in {s for s in spans if s}:
        start = text.find(span)
        while start != -1:
            marks.append((start, start + len(span)))
            start = text.find(span, start + len(span))
    out, position = [], 0
    for start, end in sorted(marks):
        if start < position:
            continue
        out.append(e(text[position:start]) + "<mark>" + e(text[start:end]) + "</mark>")
        position = end
    return "".join(out) + e(text[position:])


def _choice(item: PlanItem, *, selectable: bool) -> str:
    """The message's tick box (a pending plan offering a choice), or what was chosen on approving."""
    if selectable:
        return (
            f"<label class=pick><input type=checkbox class=pick name=msg value='{e(item.msg_key)}' "
            "form=decide-form checked> recall this message</label>"
        )
    if item.approved is False:
        return "<span class='badge deselected'>deselected: not recalled, held back as rejected</span> "
    return ""


def _item(
    item: PlanItem, *, in_group: bool = False, note_unmatched: bool = False, selectable: bool = False
) -> str:
    spans: dict[str, list[str]] = {}
    for match in item.matches:
        spans.setdefault(match["element_path"], []).append(match["evidence"])
    fields = []
    for path, kind, value in text_fields(item.body):
        fields.append(
            f"<div><span class=path>{e(path)} ({e(kind)})</span><br>"
            f"{highlight(value, spans.get(path, []))}</div>"
        )
    if item.cloud_custom_data:
        fields.append(
            f"<div><span class=path>CloudCustomData</span><br>"
            f"{highlight(item.cloud_custom_data, spans.get('CloudCustomData', []))}</div>"
        )
    if item.body is None:
        fields.append("<div><em>evidence purged (retention period passed); hash kept</em></div>")
    rules = "".join(
        f"<li><b>{e(m['rule_id'])}</b> ({e(m['rule_type'])}, {e(m['action'])}) at "
        f"<span class=path>{e(m['element_path'])}</span>: <mark>{e(m['evidence'])}</mark></li>"
        for m in item.matches
    )
    state = f" <span class=badge>{e(item.recall_state)}</span>" if item.recall_state else ""
    return (
        f"<div class=msg data-msg-key='{e(item.msg_key)}'>{_choice(item, selectable=selectable)}"
        f"<b>{e(item.sender)}</b> at {_when(item.time)} "
        f"<span class=path>{'seq ' if in_group else ''}{e(item.msg_key)}</span>{state}{''.join(fields)}"
        f"<ul>{rules or ('<li>no rule matched this message</li>' if note_unmatched else '')}</ul>"
        f"<div class=path>content sha256 {e(item.content_hash)}</div></div>"
    )


def plan_page(plan: PlanView, csrf: str, flash: str = "", reports: Sequence[Mapping[str, Any]] = ()) -> str:
    """One plan: its job, the reports it answers (with each reporter's trust), each message's evidence, and
    the one decision form (one name, one note, a button per decision the plan can take now). A pending plan
    that is not a wipe has a tick box per message (all ticked): approving recalls the ticked ones only."""
    job = plan.job
    in_group = job["conversation"].get("type") == "group"
    notice = f"<p class=flash id=flash>{e(flash)}</p>" if flash else ""
    decided = ""
    if plan.status != "pending":
        left_out = plan.deselected
        decided = (
            f"<p id=decision>{e(plan.status)} by {e(plan.decided_by)}"
            + (f" - {e(plan.note)}" if plan.note else "")
            + (f"; apply job {e(plan.apply_job_id)}" if plan.apply_job_id else "")
            + (
                f"; {len(left_out)} of {len(plan.items)} message(s) deselected (not recalled, held back)"
                if left_out
                else ""
            )
            + "</p>"
        )
    actions: list[tuple[str, str]] = []
    blocked = ""
    selectable = False
    if plan.status == "pending":
        missing = plan.missing_evidence
        if missing:
            blocked = (
                f"<p class=error id=cannot-approve>This plan cannot be approved: the evidence of "
                f"{len(missing)} of its messages was purged or never stored, and nothing is recalled without "
                "its evidence. Reject it, or have the conversation scanned again.</p>"
            )
        elif plan.is_wipe:
            actions.append(("approve", f"Approve the wipe of {job['suspect']}'s messages"))
        else:
            selectable = True
            actions.append(("approve", "Approve: recall the ticked message(s)"))
        actions.append(("reject", "Reject"))
    elif plan.status == "rejected":
        actions.append(("reopen", "Reopen: review again"))
    form = ""
    if actions:
        hint = (
            "<p>Untick a message to leave it out: approving recalls the ticked ones; each one left out "
            "counts as rejected (held back from later jobs).</p>"
            if selectable
            else ""
        )
        form = (
            f"{hint}<form class=decide id=decide-form method=post action='/plans/{plan.id}/{actions[0][0]}'>"
            # Enter in a text field submits with the first button: a disabled one, so it does nothing.
            "<button type=submit disabled hidden aria-hidden=true></button>"
            f"<input type=hidden name=csrf value='{e(csrf)}'>"
            + ("<input type=hidden name=subset value=1>" if selectable else "")
            + "<input type=text name=by placeholder='your name' required maxlength=64 id=by> "
            "<input type=text name=note placeholder='note (optional)' maxlength=500 id=note> "
            + " ".join(
                f"<button type=submit class={action} id={action} formaction='/plans/{plan.id}/{action}'>"
                f"{e(label)}</button>"
                for action, label in actions
            )
            + "</form>"
        )
    items = [
        _item(i, in_group=in_group, note_unmatched=plan.is_wipe, selectable=selectable) for i in plan.items
    ]
    report = job.get("report", {})
    return page(
        f"Plan {plan.id}",
        f"<h1>Plan {plan.id} <span class='badge {e(plan.status)}' id=status>{e(plan.status)}</span></h1>"
        f"{notice}"
        f"<p>{e(REASONS.get(plan.reason, plan.reason))}. Job <b>{e(plan.job_id)}</b>: suspect "
        f"<b>{e(job['suspect'])}</b> in <span id=conversation>{e(conversation_words(job['conversation']))}"
        f"</span>, window {_when(job['window']['since'])} to {_when(job['window']['until'])}; reported by "
        f"{e(report.get('reporter', '-'))} for {e(report.get('reason', '-'))}; rule set "
        f"{e(job['ruleset'])}.</p>{reporters_section(reports)}"
        f"{_wipe_warning(plan) if plan.is_wipe else ''}{decided}{blocked}{form}"
        f"<h2>{len(plan.items)} message(s)</h2>{''.join(items)}",
        csrf,
    )


def _wipe_warning(plan: PlanView) -> str:
    """What approving a wipe does, in words a moderator cannot miss."""
    return (
        "<div class=error id=wipe-warning><p><b>A wipe is broad, silent and has no per-message result.</b> "
        "Approving makes one <code>delete_group_msg_by_sender</code> call: it recalls <b>every</b> message "
        f"<b>{e(plan.job['suspect'])}</b> sent among the group's last 1,000 messages (of this topic only, if "
        "the job names one), also ones outside the window below and ones no rule matched. Members are "
        "not notified; their apps drop the messages on their next history pull.</p>"
        f"<p>Below are the {len(plan.items)} message(s) of {e(plan.job['suspect'])} the job saw in its "
        "window, with their evidence (kept before this plan was made). After the wipe the worker reads the "
        "history again and recalls by seq any of these the wipe missed.</p></div>"
    )
