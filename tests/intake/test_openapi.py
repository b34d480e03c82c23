"""The OpenAPI document served at ``GET /openapi.json``, checked against the handlers it describes.

Over a running intake (SQLite ledger): the document is OpenAPI 3.1 in shape, every ``$ref`` resolves and
every schema is a JSON Schema (Draft 2020-12); its operations are exactly the app's public routes; every
answer the report handlers give (each status they can produce, all of them produced here) is documented and
its body validates against the documented schema; and the documented report schema accepts what the API
takes and refuses what it answers 422 for, naming in words the rules a schema cannot state.
"""

from __future__ import annotations

import copy
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator
from referencing import Registry
from referencing.jsonschema import DRAFT202012
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.intake.reports import signed
from tests.intake.test_api import get_status, intake_settings, now_report, post
from worker.intake.server import IntakeThread, build_intake
from worker.intake.store import IntakeStore
from worker.ledger.engine import make_engine

#: Probes, metrics and the document itself: served, deliberately not documented.
OPERATIONAL = frozenset({"/healthz", "/readyz", "/metrics", "/openapi.json"})
METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})
REPORTS = "/v1/reports"
STATUS = "/v1/reports/{report_id}"
DOCUMENT_URI = "urn:recall-intake:openapi"
#: Two, not one: a replay is counted against the reporter's minute before it is found to be one, so at a
#: limit of 1 the replay of a stored request is answered 429 and 409 cannot be reached.
REPORTER_LIMIT = 2
TRUSTED = "trusted1"
UNREACHABLE = "postgresql://postgres@127.0.0.1:9/none?connect_timeout=1"


@pytest.fixture
def served(tmp_path: Path) -> Iterator[IntakeThread]:
    """The intake over a SQLite ledger; one trusted reporter, whose reports become jobs at once."""
    settings = intake_settings(
        f"sqlite:///{tmp_path}/ledger.db",
        tmp_path,
        intake_reporter_limit=REPORTER_LIMIT,
        intake_trusted_reporters=TRUSTED,
    )
    with IntakeThread(build_intake(settings, relay_interval_s=0.1)) as running:
        yield running


@pytest.fixture
def document(served: IntakeThread) -> dict[str, Any]:
    """The document as served."""
    answer = httpx.get(f"{served.url}/openapi.json")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = answer.json()
    return body


# reading the document ------------------------------------------------------------------------------------


def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def resolve(document: dict[str, Any], ref: str) -> Any:
    """The node a local ``$ref`` (``#/a/b``) points at; KeyError/IndexError/ValueError if none."""
    if not ref.startswith("#"):
        raise ValueError(f"{ref!r} is not a reference inside the document")
    node: Any = document
    for raw in ref[1:].split("/")[1:]:
        token = raw.replace("~1", "/").replace("~0", "~")
        node = node[int(token)] if isinstance(node, list) else node[token]
    return node


def references(node: Any, where: str = "#") -> Iterator[tuple[str, str]]:
    """Every reference in ``node``: ``$ref`` values and discriminator mappings, with where they are."""
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            yield where, node["$ref"]
        mapping = node.get("discriminator", {}).get("mapping", {}) if "discriminator" in node else {}
        for tag, ref in mapping.items():
            yield f"{where}/discriminator/mapping/{tag}", ref
        for key, value in node.items():
            yield from references(value, f"{where}/{_escape(key)}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from references(value, f"{where}/{index}")


def schemas_in(node: Any, where: str = "#") -> Iterator[tuple[str, Any]]:
    """Every ``schema`` of a media type, parameter or header under ``node``."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "schema":
                yield f"{where}/schema", value
            else:
                yield from schemas_in(value, f"{where}/{_escape(key)}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from schemas_in(value, f"{where}/{index}")


def validator(document: dict[str, Any], *where: str) -> Draft202012Validator:
    """A validator of the schema at ``where`` in ``document``, its ``$ref``s resolved in the document."""
    registry: Registry[Any] = Registry().with_resource(DOCUMENT_URI, DRAFT202012.create_resource(document))
    pointer = "/".join(_escape(token) for token in where)
    return Draft202012Validator({"$ref": f"{DOCUMENT_URI}#/{pointer}"}, registry=registry)


def undocumented_keys(document: dict[str, Any], schema: Any, value: Any, where: str = "$") -> list[str]:
    """Keys of ``value``'s objects that ``schema`` (an object schema with properties) does not name.

    The response schemas leave ``additionalProperties`` open (clients must tolerate new fields), so
    validation alone would let a handler answer with a field nobody documented.
    """
    while isinstance(schema, dict) and "$ref" in schema:
        schema = resolve(document, schema["$ref"])
    if not isinstance(schema, dict):
        return []
    found: list[str] = []
    properties = schema.get("properties")
    if isinstance(value, dict) and isinstance(properties, dict):
        for key, item in value.items():
            if key not in properties:
                found.append(f"{where}.{key}")
            else:
                found += undocumented_keys(document, properties[key], item, f"{where}.{key}")
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            found += undocumented_keys(document, schema["items"], item, f"{where}[{index}]")
    return found


def documented_operations(document: dict[str, Any]) -> set[tuple[str, str]]:
    """(path, method) of every operation in the document."""
    return {
        (path, method) for path, item in document["paths"].items() for method in item if method in METHODS
    }


def public_routes(app: Starlette) -> set[tuple[str, str]]:
    """(path, method) of every route the app serves, the operational ones aside, as OpenAPI spells them."""
    found: set[tuple[str, str]] = set()
    for route in app.routes:
        assert isinstance(route, Route), f"{route!r} is not a Route: teach this test to walk it"
        if route.path in OPERATIONAL:
            continue
        methods = set(route.methods or ())
        if "GET" in methods:
            methods.discard("HEAD")  # Starlette answers HEAD wherever it answers GET
        template = re.sub(r"\{(\w+):\w+\}", r"{\1}", route.path)  # {id:int} -> {id}
        found |= {(template, method.lower()) for method in methods}
    return found


def route_drift(
    app: Starlette, document: dict[str, Any]
) -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
    """(served but not documented, documented but not served)."""
    routes, documented = public_routes(app), documented_operations(document)
    return routes - documented, documented - routes


# the document's shape ------------------------------------------------------------------------------------


def test_the_served_document_is_openapi_3_1_and_every_reference_resolves(document: dict[str, Any]) -> None:
    assert re.fullmatch(r"3\.1\.\d+", document["openapi"]), document["openapi"]
    assert isinstance(document["info"]["title"], str) and document["info"]["title"]
    assert isinstance(document["info"]["version"], str) and document["info"]["version"]
    assert document["paths"], "no paths"
    schemes = document["components"]["securitySchemes"]
    problems: list[str] = []
    operation_ids: list[str] = []
    for path, item in document["paths"].items():
        if not path.startswith("/"):
            problems.append(f"{path}: a path starts with /")
        for method, operation in item.items():
            if method not in METHODS:
                problems.append(f"{path} {method}: not an HTTP method")
                continue
            said = f"{method.upper()} {path}"
            operation_ids.append(operation.get("operationId", ""))
            if not operation.get("responses"):
                problems.append(f"{said}: no responses")
            for status, response in operation.get("responses", {}).items():
                if not re.fullmatch(r"[1-5](\d\d|XX)|default", status):
                    problems.append(f"{said}: {status!r} is not a status code")
                if not isinstance(response.get("description"), str):
                    problems.append(f"{said} {status}: a response needs a description")
                for header in response.get("headers", {}):
                    if "_" in header:
                        problems.append(f"{said} {status}: header {header!r} is not an HTTP header name")
            declared = {p["name"] for p in operation.get("parameters", []) if p.get("in") == "path"}
            templated = set(re.findall(r"\{(\w+)\}", path))
            if declared != templated:
                problems.append(f"{said}: path parameters {sorted(declared)}, template {sorted(templated)}")
            problems += [
                f"{said}: path parameter {p['name']} must be required"
                for p in operation.get("parameters", [])
                if p.get("in") == "path" and p.get("required") is not True
            ]
            for requirement in operation.get("security", []):
                problems += [
                    f"{said}: no security scheme {name!r}" for name in requirement if name not in schemes
                ]
    if len(set(operation_ids)) != len(operation_ids) or "" in operation_ids:
        problems.append(f"operationIds must be present and unique: {operation_ids}")
    for where, ref in references(document):
        try:
            resolve(document, ref)
        except (KeyError, IndexError, ValueError):
            problems.append(f"{where}: $ref {ref!r} does not resolve inside the document")
    assert not problems, "\n".join(problems)


def test_every_schema_in_the_document_is_a_draft_2020_12_json_schema(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    assert {"ReportIn", "Accepted", "ReportStatus", "Error"} <= set(schemas)
    for name, schema in schemas.items():
        Draft202012Validator.check_schema(schema)  # raises SchemaError naming what is wrong
        assert isinstance(schema, dict) and schema, name
    inline = list(schemas_in(document["paths"]))
    assert inline
    for _where, schema in inline:
        Draft202012Validator.check_schema(schema)


# the document against the routes -------------------------------------------------------------------------


def test_the_documented_operations_are_exactly_the_public_routes(
    served: IntakeThread, document: dict[str, Any]
) -> None:
    app = served.intake.app
    served_paths = {route.path for route in app.routes if isinstance(route, Route)}
    assert served_paths >= OPERATIONAL, "the operational routes this test leaves out are gone or renamed"
    undocumented, unserved = route_drift(app, document)
    assert not undocumented, f"served without documentation: {sorted(undocumented)}"
    assert not unserved, f"documented without a handler: {sorted(unserved)}"
    assert {(REPORTS, "post"), (STATUS, "get"), ("/v1/callbacks/tencent", "post")} <= public_routes(app)


def test_a_handler_without_documentation_and_documentation_without_a_handler_are_both_found(
    served: IntakeThread, document: dict[str, Any]
) -> None:
    async def withdraw(_: Request) -> Response:
        return Response(status_code=204)

    extended = Starlette(routes=[*served.intake.app.routes, Route(STATUS, withdraw, methods=["DELETE"])])
    assert route_drift(extended, document) == ({(STATUS, "delete")}, set())
    more = copy.deepcopy(document)
    more["paths"]["/v1/reports/{report_id}/evidence"] = {"get": {"responses": {"200": {"description": "x"}}}}
    assert route_drift(served.intake.app, more) == (set(), {("/v1/reports/{report_id}/evidence", "get")})


# every answer documented, every documented answer given ---------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """One request of the test and the intake's answer to it."""

    what: str
    path: str  # as the document names it
    method: str
    expected: int
    response: httpx.Response


def answer_problems(document: dict[str, Any], answer: Answer) -> list[str]:
    """What about ``answer`` the document does not describe (an empty list: all of it)."""
    response, status = answer.response, str(answer.response.status_code)
    said = f"{answer.what} ({answer.method.upper()} {answer.path}) answered {status}"
    if response.status_code != answer.expected:
        return [f"{said}, expected {answer.expected}: {response.text[:300]}"]
    responses = document["paths"][answer.path][answer.method]["responses"]
    if status not in responses:
        return [f"{said}, which is not among the documented {sorted(responses)}"]
    documented = responses[status]
    media = response.headers.get("content-type", "").split(";")[0].strip()
    if media not in documented.get("content", {}):
        return [f"{said} as {media!r}, documented as {sorted(documented.get('content', {}))}"]
    body = response.json()
    where = ("paths", answer.path, answer.method, "responses", status, "content", media, "schema")
    problems = [
        f"{said}: {error.json_path}: {error.message}"
        for error in validator(document, *where).iter_errors(body)
    ]
    schema = documented["content"][media]["schema"]
    problems += [f"{said}: {key} is not documented" for key in undocumented_keys(document, schema, body)]
    for name, header in documented.get("headers", {}).items():
        value = response.headers.get(name)
        if value is None:
            problems.append(f"{said}: no {name} header, though one is documented")
            continue
        typed: object = int(value) if header["schema"].get("type") == "integer" and value.isdigit() else value
        if not Draft202012Validator(header["schema"]).is_valid(typed):
            problems.append(f"{said}: header {name}: {value!r} is not {header['schema']}")
    return problems


class Requests:
    """The test's requests to one intake, and its answers."""

    def __init__(self, served: IntakeThread) -> None:
        self.served = served
        self.answers: list[Answer] = []

    def filed(self, what: str, expected: int, response: httpx.Response) -> httpx.Response:
        self.answers.append(Answer(what, REPORTS, "post", expected, response))
        return response

    def read(self, what: str, expected: int, response: httpx.Response) -> httpx.Response:
        self.answers.append(Answer(what, STATUS, "get", expected, response))
        return response


def drive_filing(requests: Requests) -> tuple[str, str]:
    """``POST /v1/reports`` to every answer it can give; the ids of a report still gathering and of the
    trusted reporter's (whose case is due at once)."""
    served, filed, url = requests.served, requests.filed, f"{requests.served.url}{REPORTS}"
    gathering = filed("a signed report", 202, post(served, now_report(reporter="filer")))
    trusted = filed(
        "a trusted reporter's report", 202, post(served, now_report(reporter=TRUSTED, msg_seqs=[7]))
    )
    filed("a body that is not JSON", 400, post(served, b"{not json"))
    filed("a JSON array", 400, post(served, b"[1, 2]"))
    raw, headers = signed(now_report(reporter="anonymous"))
    filed("an unsigned report", 401, httpx.post(url, content=raw))
    wrong = "a-wrong-secret-of-some-length"
    filed("a wrong secret", 401, post(served, now_report(reporter="anonymous"), secret=wrong))
    filed("a stale signature", 401, post(served, now_report(reporter="anonymous"), now=time.time() - 301))
    raw, headers = signed(now_report(reporter="replayer"))
    filed("the first of two identical requests", 202, httpx.post(url, content=raw, headers=headers))
    filed("the second of two identical requests", 409, httpx.post(url, content=raw, headers=headers))
    filed("a body over 32 KiB", 413, post(served, now_report(description="x" * 40_000)))
    filed("an unknown category", 422, post(served, now_report(category="rude")))
    filed("a missing field", 422, post(served, {k: v for k, v in now_report().items() if k != "suspect"}))
    filed("a self-report", 422, post(served, now_report(reporter="spammer")))
    filed("a report against a protected account", 422, post(served, now_report(suspect="ceo")))
    for number in range(1, REPORTER_LIMIT + 2):
        expected = 202 if number <= REPORTER_LIMIT else 429
        body = now_report(reporter="busy", msg_seqs=[number])
        filed(f"report {number} of one reporter in a minute", expected, post(served, body))
    store = served.intake.store
    dead = IntakeStore(make_engine(UNREACHABLE))
    try:
        store.write_batch = dead.write_batch  # type: ignore[method-assign]
        filed("a report while the database is away", 503, post(served, now_report(reporter="unlucky")))
    finally:
        del store.write_batch  # the class's method again
        dead.engine.dispose()
    filed("a report once the database is back", 202, post(served, now_report(reporter="unlucky")))
    return gathering.json()["report_id"], trusted.json()["report_id"]


def drive_reading(requests: Requests, gathering: str, trusted: str) -> None:
    """``GET /v1/reports/{report_id}`` to every answer it can give."""
    served, read = requests.served, requests.read
    read("a report still gathering", 200, get_status(served, gathering))
    deadline = time.monotonic() + 20
    while get_status(served, trusted).json()["job_id"] is None:
        assert time.monotonic() < deadline, "the trusted reporter's case never became a job"
        time.sleep(0.1)
    queued = read("a report whose job is made", 200, get_status(served, trusted))
    assert {"job_id", "mode", "why"} <= set(queued.json()), queued.json()
    read("an unsigned read", 401, httpx.get(f"{served.url}/v1/reports/{gathering}"))
    _, elsewhere = signed(b"", path="/v1/reports/rpt_other", method="GET")
    signed_elsewhere = httpx.get(f"{served.url}/v1/reports/{gathering}", headers=elsewhere)
    read("a read signed for another report", 401, signed_elsewhere)
    read("an unknown report", 404, get_status(served, "rpt_unknown"))
    read("an id longer than any report's", 404, get_status(served, "r" * 41))
    store = served.intake.store
    dead = IntakeStore(make_engine(UNREACHABLE))
    try:
        store.report_status = dead.report_status  # type: ignore[method-assign]
        read("a read while the database is away", 503, get_status(served, gathering))
    finally:
        del store.report_status
        dead.engine.dispose()
    read("a read once the database is back", 200, get_status(served, gathering))


def test_every_answer_of_the_report_handlers_is_documented_and_every_documented_one_is_given(
    served: IntakeThread, document: dict[str, Any]
) -> None:
    requests = Requests(served)
    drive_reading(requests, *drive_filing(requests))
    problems = [problem for answer in requests.answers for problem in answer_problems(document, answer)]
    for path, method in ((REPORTS, "post"), (STATUS, "get")):
        documented = set(document["paths"][path][method]["responses"])
        given = {
            str(a.response.status_code) for a in requests.answers if (a.path, a.method) == (path, method)
        }
        if documented != given:
            problems.append(
                f"{method.upper()} {path}: documented {sorted(documented)}, given {sorted(given)}: "
                f"never given {sorted(documented - given)}, undocumented {sorted(given - documented)}"
            )
    assert not problems, "\n".join(problems)


def test_an_answer_the_document_does_not_describe_is_caught(
    served: IntakeThread, document: dict[str, Any]
) -> None:
    stored = post(served, now_report())
    answer = Answer("a signed report", REPORTS, "post", 202, stored)
    assert answer_problems(document, answer) == []
    fewer = copy.deepcopy(document)
    del fewer["paths"][REPORTS]["post"]["responses"]["202"]
    assert "not among the documented" in answer_problems(fewer, answer)[0]
    narrower = copy.deepcopy(document)
    del narrower["components"]["schemas"]["Accepted"]["properties"]["case_id"]
    narrower["components"]["schemas"]["Accepted"]["required"].remove("case_id")
    assert answer_problems(narrower, answer) == [
        "a signed report (POST /v1/reports) answered 202: $.case_id is not documented"
    ]
    stricter = copy.deepcopy(document)
    stricter["components"]["schemas"]["Accepted"]["properties"]["case_id"] = {"type": "string"}
    [problem] = answer_problems(stricter, answer)
    assert "$.case_id" in problem and "is not of type 'string'" in problem


# the report schema against the parser --------------------------------------------------------------------

VALID_REPORTS = {
    "group": now_report,
    "topic": lambda: now_report(
        conversation={"type": "group", "group_id": "@TGS#_@TGS#cQVL", "topic_id": "@TGS#_@TGS#cQVL@TOPIC#_t"},
        description="spam in the topic\nagain and again",
        language="zh-CN",
    ),
    "c2c": lambda: {
        **{k: v for k, v in now_report().items() if k != "msg_seqs"},
        "conversation": {"type": "c2c", "peer": "spammer"},
        "msg_keys": ["549396494_2578554_1584669680"],
    },
    "official-account": lambda: {
        **{k: v for k, v in now_report().items() if k != "msg_seqs"},
        "suspect": "@TOA#_news",
        "conversation": {"type": "official_account", "account": "@TOA#_news"},
        "msg_keys": ["1_2_1700000000"],
    },
}

INVALID_FIELDS: list[tuple[dict[str, Any], str]] = [
    ({"reporter": ""}, "reporter"),
    ({"reporter": "x" * 33}, "reporter"),
    ({"reporter": "bad\nname"}, "reporter"),
    ({"suspect": None}, "suspect"),
    ({"conversation": {"type": "channel"}}, "conversation"),
    ({"conversation": {"type": "group"}}, "conversation.group_id"),
    ({"conversation": {"type": "group", "group_id": "g", "extra": 1}}, "conversation.extra"),
    ({"conversation": {"type": "official_account", "account": "nope"}}, "conversation.account"),
    ({"msg_seqs": [0]}, "msg_seqs.0"),
    ({"msg_seqs": ["5"]}, "msg_seqs.0"),
    ({"msg_seqs": list(range(1, 102))}, "msg_seqs"),
    ({"category": "rude"}, "category"),
    ({"description": "d" * 1001}, "description"),
    ({"description": "bell\x07"}, "description"),
    ({"reported_at": -1}, "reported_at"),
    ({"reported_at": "yesterday"}, "reported_at"),
    ({"language": "not a language"}, "language"),
    ({"unknown": 1}, "unknown"),
]

#: What the API refuses that a JSON Schema cannot state: the phrase its answer and the schema's words share.
UNSTATED: list[tuple[dict[str, Any], str]] = [
    ({"conversation": {"type": "c2c", "peer": "someone-else"}, "msg_seqs": []}, "must be the suspect"),
    ({"conversation": {"type": "c2c"}}, "msg_seqs names messages of a group"),
    ({"msg_keys": ["1_2_3"]}, "use msg_seqs in a group"),
    (
        {"conversation": {"type": "official_account", "account": "@TOA#_news"}, "msg_seqs": []},
        "the suspect is the account itself",
    ),
    ({"reported_at": int(time.time()) + 3600}, "is in the future"),
    ({"reporter": "spammer"}, "self-reports are refused"),
    ({"suspect": "ceo"}, "protected account"),
]


@pytest.mark.parametrize("kind", list(VALID_REPORTS))
def test_the_report_schema_accepts_what_the_api_takes(
    served: IntakeThread, document: dict[str, Any], kind: str
) -> None:
    body = VALID_REPORTS[kind]()
    errors = [e.message for e in validator(document, "components", "schemas", "ReportIn").iter_errors(body)]
    assert errors == []
    answer = post(served, body)
    assert answer.status_code == 202, answer.text


def test_the_report_schema_refuses_what_the_api_answers_422_for(
    served: IntakeThread, document: dict[str, Any]
) -> None:
    report_in = validator(document, "components", "schemas", "ReportIn")
    problems = []
    for change, field in INVALID_FIELDS:
        body = {**now_report(), **change}
        answer = post(served, body)
        if (answer.status_code, answer.json().get("field")) != (422, field):
            problems.append(f"{change}: the API answered {answer.status_code} {answer.text[:200]}")
        if report_in.is_valid(body):
            problems.append(f"{change}: the API refuses {field}, the documented schema accepts it")
    assert not problems, "\n".join(problems)


def test_what_the_schema_cannot_state_the_document_says_in_words(
    served: IntakeThread, document: dict[str, Any]
) -> None:
    report_in = validator(document, "components", "schemas", "ReportIn")
    words = document["components"]["schemas"]["ReportIn"]["description"]
    for change, phrase in UNSTATED:
        body = {**now_report(), **change}
        answer = post(served, body)
        assert answer.status_code == 422, (change, answer.text)
        assert phrase in answer.json()["message"], (change, answer.json())
        assert report_in.is_valid(body), f"{change}: the schema states this rule after all: drop it here"
        assert phrase in words, f"the ReportIn schema's description does not say {phrase!r}"
