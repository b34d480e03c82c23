"""The intake's OpenAPI 3.1 document (``GET /openapi.json``).

The report schema is generated from the model that validates reports, so the two cannot drift apart; the
routes and their answers are written out here and a test checks them against the app's handlers.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from worker.intake.model import (
    ACCOUNT_IS_SUSPECT,
    KEYS_OUTSIDE_GROUPS,
    PEER_IS_SUSPECT,
    PROTECTED,
    SELF_REPORT,
    SEQS_IN_GROUPS,
    ReportIn,
)
from worker.intake.signing import KEY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER

_SIGNED: list[dict[str, list[str]]] = [{"recallSignature": []}]

_ERROR = {
    "type": "object",
    "required": ["error", "message"],
    "properties": {
        "error": {
            "type": "string",
            "enum": [
                "unauthorized",
                "too_large",
                "invalid_report",
                "refused",
                "replayed",
                "rate_limited",
                "unavailable",
                "not_found",
            ],
        },
        "message": {"type": "string"},
        "field": {"type": "string", "description": "the field at fault (invalid_report, refused)"},
        "problems": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
            },
        },
        "report_id": {"type": ["string", "null"], "description": "replayed: what the first request stored"},
        "retry_after": {"type": "integer"},
    },
}

_ACCEPTED = {
    "type": "object",
    "required": ["report_id", "status", "case_id"],
    "properties": {
        "report_id": {"type": "string"},
        "status": {"const": "queued"},
        "case_id": {"type": "integer"},
    },
}

_STATUS = {
    "type": "object",
    "required": ["report_id", "status", "received_at", "case", "job_id"],
    "properties": {
        "report_id": {"type": "string"},
        "status": {"type": "string", "enum": ["queued", "running", "done", "dismissed", "failed"]},
        "received_at": {"type": "integer"},
        "reporter": {"type": "string"},
        "suspect": {"type": "string"},
        "category": {"type": "string"},
        "case": {
            "type": "object",
            "properties": {
                "id": {"type": "integer"},
                "reports": {"type": "integer"},
                "follow_up_of": {"type": ["integer", "null"]},
            },
        },
        "job_id": {"type": ["string", "null"]},
        "due_at": {"type": "integer", "description": "queued, still gathering: when its job is made"},
        "mode": {"type": "string", "enum": ["recall", "dry_run"]},
        "why": {"type": "string"},
        "counts": {
            "type": "object",
            "description": "done, dismissed, failed: what the job found",
            "properties": {
                name: {"type": "integer"}
                for name in ("scanned", "matched", "recalled", "already_recalled", "proposed")
            },
        },
    },
}


_TENCENT_REPLY = {
    "type": "object",
    "required": ["ActionStatus", "ErrorCode", "ErrorInfo"],
    "properties": {
        "ActionStatus": {"type": "string", "enum": ["OK", "FAIL"]},
        "ErrorCode": {"type": "integer", "description": "0 with OK, else what was refused"},
        "ErrorInfo": {"type": "string"},
    },
}

#: What the parser refuses (422) that a JSON Schema cannot say: rules comparing fields, and the app's own.
_UNSAID = (
    SEQS_IN_GROUPS,
    KEYS_OUTSIDE_GROUPS,
    PEER_IS_SUSPECT,
    ACCOUNT_IS_SUSPECT,
    "reported_at is in the future",
    SELF_REPORT,
    PROTECTED,
)


def _json(schema: dict[str, Any] | str) -> dict[str, Any]:
    if isinstance(schema, str):
        schema = {"$ref": f"#/components/schemas/{schema}"}
    return {"content": {"application/json": {"schema": schema}}}


def _header(description: str, kind: str = "integer") -> dict[str, Any]:
    return {"schema": {"type": kind}, "description": description}


def _answer(
    description: str,
    schema: dict[str, Any] | str = "Error",
    headers: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    answer = {"description": description, **_json(schema)}
    if headers:
        answer["headers"] = headers
    return answer


@cache
def openapi_document() -> dict[str, Any]:
    """The OpenAPI document of the intake's public routes."""
    report_schema = ReportIn.model_json_schema(ref_template="#/components/schemas/{model}")
    definitions = report_schema.pop("$defs", {})
    report_schema["description"] += " Also refused (422), though this schema cannot say so: " + "; ".join(
        _UNSAID
    )
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "recall-worker report intake",
            "version": "1",
            "description": (
                "Reports of abusive messages in Tencent Cloud Chat, turned into moderation jobs. Sign every "
                f"request: {KEY_HEADER} (key id), {TIMESTAMP_HEADER} (Unix seconds, within 5 minutes) and "
                f"{SIGNATURE_HEADER}: v1=hex(HMAC-SHA256(secret, timestamp + '\\n' + METHOD + '\\n' + path "
                "+ '\\n' + body)). Each signed POST is accepted once."
            ),
        },
        "paths": {
            "/v1/reports": {
                "post": {
                    "operationId": "fileReport",
                    "summary": "File a report",
                    "security": _SIGNED,
                    "requestBody": {"required": True, **_json("ReportIn")},
                    "responses": {
                        "202": _answer(
                            "stored; its job follows",
                            "Accepted",
                            {"Location": _header("the report's status (GET it, signed)", "string")},
                        ),
                        "400": _answer("the body is not a JSON object"),
                        "401": _answer("missing, stale or wrong signature"),
                        "409": _answer("this signed request was served before"),
                        "413": _answer("the body is too large"),
                        "422": _answer(
                            "a field is invalid, or the report is refused (self-report, protected)"
                        ),
                        "429": _answer(
                            "the reporter's limit is reached",
                            headers={"Retry-After": _header("seconds until it may report again")},
                        ),
                        "503": _answer(
                            "the report store is unavailable",
                            headers={"Retry-After": _header("seconds to wait")},
                        ),
                    },
                }
            },
            "/v1/reports/{report_id}": {
                "get": {
                    "operationId": "reportStatus",
                    "summary": "What became of a report",
                    "security": _SIGNED,
                    "parameters": [
                        {"name": "report_id", "in": "path", "required": True, "schema": {"type": "string"}}
                    ],
                    "responses": {
                        "200": _answer("the report's status", "ReportStatus"),
                        "401": _answer("missing, stale or wrong signature"),
                        "404": _answer("no such report"),
                        "503": _answer(
                            "the report store is unavailable",
                            headers={"Retry-After": _header("seconds to wait")},
                        ),
                    },
                }
            },
            "/v1/callbacks/tencent": {
                "post": {
                    "operationId": "tencentCallback",
                    "summary": "Tencent Chat's callbacks (Alert.RequestOverLimit lowers a command's budget)",
                    "description": "Checked by SdkAppid and, with a callback token, Sign and RequestTime.",
                    "responses": {
                        "200": _answer("acknowledged", "TencentReply"),
                        "400": _answer("malformed callback", "TencentReply"),
                        "401": _answer("refused: a missing, wrong or stale Sign", "TencentReply"),
                        "403": _answer("refused: another app's SdkAppid, or none", "TencentReply"),
                        "413": _answer("the body is too large", "TencentReply"),
                        "503": _answer("the budget store (Redis) is unavailable", "TencentReply"),
                    },
                }
            },
        },
        "components": {
            "schemas": {
                "ReportIn": report_schema,
                **definitions,
                "Accepted": _ACCEPTED,
                "ReportStatus": _STATUS,
                "Error": _ERROR,
                "TencentReply": _TENCENT_REPLY,
            },
            "securitySchemes": {
                "recallSignature": {
                    "type": "apiKey",
                    "in": "header",
                    "name": SIGNATURE_HEADER,
                    "description": f"with {KEY_HEADER} and {TIMESTAMP_HEADER}; see info.description",
                }
            },
        },
    }
