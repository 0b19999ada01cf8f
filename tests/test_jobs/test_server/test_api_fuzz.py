"""The API fuzzed: Schemathesis generates requests from the OpenAPI schema and sends them to a real
server (uvicorn, over the small index, with a token): no answer is a 5xx, and each is one the schema
documents (its status, content type, body and headers). With a token, every route but /, /static
and /healthz refuses a request without it."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import Counter
from urllib.parse import quote

import httpx
import pytest
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (content_type_conformance, negative_data_rejection,
                                               response_headers_conformance, response_schema_conformance,
                                               status_code_conformance, unsupported_method)

from http_server import served
from jobs.server.app import create_app

TOKEN = "fuzz-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
# Every answer: no 5xx, and a status, content type, body and headers the schema documents.
CONFORMANCE = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
               response_headers_conformance]
# And of the generated requests: one the schema says is invalid is refused (4xx), as is a method the
# path does not document (405).
FUZZ_CHECKS = [*CONFORMANCE, negative_data_rejection, unsupported_method]
# Fuzzing cases per operation, besides the coverage phase's (boundary values, missing and wrong fields,
# other methods): 1,443 requests in all, about 15 s on a 2-core machine.
MAX_EXAMPLES = 300
MIN_REQUESTS = 1_000
API_PATHS = {"/library", "/search", "/query", "/healthz", "/metrics", "/thumbnails/{key}", "/videos/{video_id}"}
OPEN_PATHS = {"/healthz"}  # of the schema's; the page (/) and /static are not in it


@pytest.fixture(scope="module")
def api(lite_db, tmp_path_factory) -> str:
    """The base URL of a server over `lite_db` that needs TOKEN."""
    with served(create_app(lite_db, token=TOKEN, cache_dir=tmp_path_factory.mktemp("thumbnails"))) as url:
        yield url


def test_fuzzed_requests_get_no_5xx_and_the_answers_the_schema_documents(api, tmp_path):
    """`schemathesis run` (its coverage and fuzzing phases), every request with the token; deterministic:
    the same cases each run. Its HAR report holds every request and answer. One worker: the cases in
    one order (and Schemathesis' workers are threads, which crashed in CPython 3.11's ast.parse)."""
    har = tmp_path / "requests.har"
    command = [sys.executable, "-m", "schemathesis.cli", "run", f"{api}/openapi.json",
               "--header", f"Authorization: Bearer {TOKEN}", "--checks", ",".join(c.__name__ for c in FUZZ_CHECKS),
               "--max-examples", str(MAX_EXAMPLES), "--generation-deterministic", "--workers", "1",
               "--suppress-health-check", "too_slow", "--request-timeout", "60", "--no-color",
               "--report", "har", "--report-har-path", str(har)]
    run = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=540)
    output = run.stdout + run.stderr
    report = re.search(r"=+ (FAILURES|ERRORS) =+", output)
    assert run.returncode == 0, output[report.start():] if report else output[-5000:]
    answered = Counter(entry["response"]["status"] for entry in json.loads(har.read_text())["log"]["entries"])
    print(f"{answered.total()} requests; answered {dict(sorted(answered.items()))}")
    assert answered.total() >= MIN_REQUESTS, answered
    assert not {status for status in answered if status >= 500}, answered
    assert answered[200] > 0 and answered[400] > 0 and answered[422] > 0, answered


def test_answers_to_valid_requests_are_as_the_schema_documents(api):
    """What fuzzing seldom reaches: searches and queries that find rows, a plan, a thumbnail, a video."""
    schema = schemathesis.openapi.from_url(f"{api}/openapi.json", headers=AUTH)
    [hit] = httpx.post(f"{api}/search", json={"text": "a red circle", "k": 1}, headers=AUTH).json()
    sql = "SELECT video_id, colour FROM videos WHERE colour = :c LIMIT 3"
    cases = [schema["/library"]["GET"].Case(), schema["/healthz"]["GET"].Case(), schema["/metrics"]["GET"].Case(),
             schema["/search"]["POST"].Case(body={"text": "a red circle", "k": 3}, media_type="application/json"),
             schema["/search"]["POST"].Case(body={"video_id": hit["video_id"], "per_video": True},
                                            media_type="multipart/form-data"),
             schema["/query"]["POST"].Case(body={"sql": sql, "params": {"c": "red"}}, media_type="application/json"),
             schema["/query"]["POST"].Case(body={"sql": sql, "params": {"c": "red"}, "explain": True},
                                           media_type="application/json"),
             # A key is video_id#segment: its `#` quoted, as the page does (Schemathesis sends a value as given).
             schema["/thumbnails/{key}"]["GET"].Case(path_parameters={"key": quote(hit["key"], safe="")}),
             schema["/videos/{video_id}"]["GET"].Case(path_parameters={"video_id": quote(hit["video_id"], safe="")})]
    for case in cases:
        response = case.call_and_validate(headers=AUTH, checks=CONFORMANCE)
        assert response.status_code == 200, (case.operation.label, response.text)
    rows, plan = (case.call(headers=AUTH).json() for case in cases[5:7])
    assert len(rows) == 3 and {row["colour"] for row in rows} == {"red"}
    assert set(plan) == {"plan", "steps"}


def test_with_a_token_every_route_but_the_page_and_healthz_refuses_a_request_without_it(api):
    """Every operation of the schema, its path parameters any value, sent without the token and with a
    wrong one: a 401 as documented (WWW-Authenticate: Bearer), before any body is read."""
    schema = schemathesis.openapi.from_url(f"{api}/openapi.json", headers=AUTH)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {operation.path for operation in operations} == API_PATHS
    for operation in operations:
        case = operation.Case(path_parameters={name: "x" for name in re.findall(r"{(\w+)}", operation.path)})
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
            response = case.call(headers=headers)
            if operation.path in OPEN_PATHS:
                assert response.status_code == 200, (operation.label, headers, response.text)
                continue
            assert response.status_code == 401, (operation.label, headers, response.text)
            assert response.headers["www-authenticate"] == ["Bearer"]
            case.validate_response(response, checks=CONFORMANCE)
    for path in ("/openapi.json", "/docs"):  # not in the schema, behind the token all the same
        assert httpx.get(f"{api}{path}").status_code == 401, path
        assert httpx.get(f"{api}{path}", headers=AUTH).status_code == 200, path
    for path in ("/", "/static/page.js", "/static/page.css"):
        assert httpx.get(f"{api}{path}").status_code == 200, path
