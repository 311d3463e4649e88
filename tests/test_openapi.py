"""The OpenAPI description (backend/web/openapi.py, served at /openapi.json) against the running app.

1. The document is valid OpenAPI 3.1 and every schema in it is valid JSON Schema 2020-12.
2. The app's routes and the document agree: same paths, same methods; undeclared methods answer a JSON 405.
3. Schemathesis fuzzes every operation in-process (WSGI), from the served document, with valid (positive) and
   invalid (negative) requests: no 5xx, and every response conforms (status documented, content type, body
   schema, headers), error bodies included. Development mode, then production mode with no key, a made-up key,
   a deactivated key, a user key and an admin key (401/403 paths), then 429s with their headers.

Examples per operation and mode: ESSENTIA_FUZZ_EXAMPLES (default 25 in CI; the full run uses >= 100). With
ESSENTIA_FUZZ_REPORT=path, one JSON line per fuzzed operation is appended there (examples, statuses, failures).
Generation is derandomized, so CI runs are repeatable. No request leaves the machine: /analyze's DNS answers are
stubbed (a documentation address, refused as blocked_address, or a public one), every connection the fetcher
opens to a non-loopback address is refused before a socket exists (502 download_failed), and a guard fails the
test on any other outbound connect.
"""
from __future__ import annotations

import collections
import importlib.util
import json
import os
import re
import socket
import zlib
from typing import Any

import hypothesis
import jsonschema_rs
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from backend import __version__
from backend.web import docs
from backend.web.openapi import openapi_spec
from tests import synth
from tests.conftest import create_key

FUZZ_EXAMPLES = int(os.environ.get("ESSENTIA_FUZZ_EXAMPLES", "25"))
FUZZ_REPORT = os.environ.get("ESSENTIA_FUZZ_REPORT")
SPEC = openapi_spec(__version__)
OPERATIONS = [(method.upper(), path) for path, item in SPEC["paths"].items() for method in item]
# 5xx are the server's own faults, with one documented exception: /analyze reports a failed or slow download from
# the URL's server as 502/504 (the upstream's fault, not ours). Anything else at 5xx fails the run.
UPSTREAM_ERRORS = {("POST /analyze", 502, "download_failed"), ("POST /analyze", 504, "download_timeout")}


def no_server_fault(ctx, response, case) -> None:
    """schemathesis' not_a_server_error, minus the documented upstream failures of /analyze."""
    if response.status_code < 500:
        return None
    try:
        code = response.json().get("error")
    except Exception:
        code = None
    if (case.operation.label, response.status_code, code) in UPSTREAM_ERRORS:
        return None
    return not_a_server_error(ctx, response, case)


CONFORMANCE = [status_code_conformance, content_type_conformance, response_schema_conformance,
               response_headers_conformance]
CHECKS = [no_server_fault, *CONFORMANCE]
HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
SQLITE_MAX_INT = 2 ** 63 - 1

# The raw-body upload accepts `audio/*`: send such bodies as bytes, like application/octet-stream.
schemathesis.serializer.alias(["audio/wav", "audio/mpeg", "audio/mp4", "audio/flac"], "application/octet-stream")

# Known server bugs, each pinned by a strict xfail test below. While one is open the fuzzer records a response that
# matches it (instead of failing) so the rest of the contract stays checked; remove the entry, its branch in
# known_bug() and the xfail marker once it is fixed.
KNOWN_BUGS = {
    "nul_search_503": "GET /cache/search?q=abc%00 (a NUL character in a query of 3+ characters) goes to the FTS5 "
                      "trigram MATCH, which stops reading the quoted phrase at the NUL: sqlite3.OperationalError "
                      "'unterminated string', answered as 503 storage_unavailable (a server fault, with Retry-After) "
                      "for the client's input. It should be 200 (a literal search) or 400 invalid_parameter.",
}


def known_bug(case, response) -> str | None:
    if case.operation.label == "GET /cache/search" and response.status_code == 503 and \
            "\x00" in str((case.query or {}).get("q", "")):
        return "nul_search_503"
    return None


# -- building the app under test ------------------------------------------------------------------------------------

def with_docs(app):
    """The docs blueprint, until backend/web/__init__.py registers it (then this is a no-op)."""
    if "docs" not in app.blueprints:
        app.register_blueprint(docs.bp)
    return app


SEED_WAV = synth.wav_bytes(synth.song(120, "A", "minor", seconds=6))


def seed(client, headers: dict[str, str] | None = None) -> None:
    """A real analysis in the cache (so the 200 paths of /cache*, /verify and DELETE carry data), corrected once."""
    headers = dict(headers or {})
    listed = client.get("/cache", headers=headers)
    assert listed.status_code == 200, listed.get_json()
    if listed.get_json():
        return
    response = client.post("/analyze_data", data=SEED_WAV, headers={
        **headers, "Content-Type": "audio/wav", "X-Song-Title": "Seed Song",
        "X-Song-Artist": "Beyoncé".encode("utf-8").decode("latin-1")})
    assert response.status_code == 200, response.get_json()
    song_id = response.get_json()["id"]
    verified = client.post("/verify", json={"id": song_id, "manual_bpm": 121, "manual_key": "Bb minor",
                                            "bpm_notes": "seed"}, headers=headers)
    assert verified.status_code == 200, verified.get_json()


# -- no network: stubbed DNS, refused connections, and a guard that fails loudly ------------------------------------

class NetworkGuard:
    def __init__(self):
        self.lookups: list[str] = []
        self.refused: list[str] = []
        self.violations: list[str] = []

    def install(self, mp: pytest.MonkeyPatch) -> None:
        from backend.audio import fetch

        def stub_resolver(host, port, *args, **kwargs):
            self.lookups.append(str(host))
            # Half the names get TEST-NET-1, which is not public: refused as blocked_address before any connection.
            # The other half get a public address, so the fetcher goes on to connect(), which `refuse` below
            # answers like a closed port (502 download_failed) before any socket exists.
            address = "192.0.2.1" if zlib.crc32(str(host).encode("utf-8", "replace")) % 2 else "93.184.215.14"
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port or 80))]

        real_pinned_connect = fetch._PinnedHTTPConnection.connect

        def refuse(conn):
            if conn._address.is_loopback:  # a test's own server on 127.0.0.1 (allow_loopback_urls=True)
                return real_pinned_connect(conn)
            self.refused.append(f"{conn._address}:{conn.port}")
            raise ConnectionRefusedError("tests: outbound connections are refused")

        real_connect = socket.socket.connect

        def guarded_connect(sock, address):
            host = address[0] if isinstance(address, tuple) else None
            if host is not None and host not in ("127.0.0.1", "::1", "localhost"):
                self.violations.append(repr(address))
                raise AssertionError(f"outbound connection attempted during the fuzz: {address!r}")
            return real_connect(sock, address)

        mp.setitem(fetch.fetch_url.__kwdefaults__, "resolver", stub_resolver)
        mp.setattr(fetch._PinnedHTTPConnection, "connect", refuse)
        mp.setattr(socket, "getaddrinfo", stub_resolver)
        mp.setattr(socket.socket, "connect", guarded_connect)


@pytest.fixture(scope="module")
def network_guard():
    mp = pytest.MonkeyPatch()
    guard = NetworkGuard()
    guard.install(mp)
    yield guard
    mp.undo()
    assert not guard.violations, guard.violations


def _module_app(tmp_path_factory, name: str, **overrides):
    from backend.app import create_app
    from tests.conftest import settings_for

    app = create_app(settings_for(tmp_path_factory.mktemp(name), **overrides))
    app.config["TESTING"] = True
    return with_docs(app)


def _close(app) -> None:
    services = app.extensions["essentia"]
    services.executor.shutdown()
    services.store.close()


@pytest.fixture(scope="module")
def dev_app(tmp_path_factory, network_guard):
    app = _module_app(tmp_path_factory, "fuzz-dev")
    seed(app.test_client())
    yield app
    _close(app)


@pytest.fixture(scope="module")
def prod_app(tmp_path_factory, network_guard):
    app = _module_app(tmp_path_factory, "fuzz-prod", production=True, rate_limit=0)
    keys = {
        "admin": create_key(app, "fuzz admin", "--admin", "--daily-limit", "0"),
        "user": create_key(app, "fuzz user", "--daily-limit", "0"),
        "inactive": create_key(app, "fuzz inactive", "--daily-limit", "0"),
    }
    listing = app.test_cli_runner().invoke(args=["keys", "list"])
    inactive_id = next(re.findall(r"^\s*(\d+)\b", line)[0] for line in listing.output.splitlines()
                       if "fuzz inactive" in line)
    result = app.test_cli_runner().invoke(args=["keys", "deactivate", inactive_id])
    assert result.exit_code == 0, result.output
    app.extensions["essentia"].key_validator.forget()
    app.config["FUZZ_KEYS"] = keys
    seed(app.test_client(), {"X-API-Key": keys["admin"]})
    yield app
    _close(app)


# -- 1. the document ------------------------------------------------------------------------------------------------

def _walk_schemas(node: Any, where: str = "#"):
    """Every JSON Schema in the document (values of `schema` keys and of components/schemas)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "schema" and isinstance(value, dict):
                yield f"{where}/schema", value
            if where == "#/components" and key == "schemas":
                for name, schema in value.items():
                    yield f"#/components/schemas/{name}", schema
            yield from _walk_schemas(value, f"{where}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _walk_schemas(value, f"{where}/{index}")


def _refs(node: Any):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def test_document_is_valid_openapi_3_1():
    assert SPEC["openapi"].startswith("3.1.")
    schemathesis.openapi.from_dict(SPEC).validate()  # the OAS 3.1 meta-schema; raises on any violation
    schemas = list(_walk_schemas(SPEC))
    assert len(schemas) > 20
    for where, schema in schemas:
        try:
            jsonschema_rs.meta.validate(schema)  # JSON Schema 2020-12, OpenAPI 3.1's dialect
        except jsonschema_rs.ValidationError as error:
            pytest.fail(f"{where} is not valid JSON Schema: {error}")
    for ref in set(_refs(SPEC)):
        node: Any = SPEC
        for part in ref.removeprefix("#/").split("/"):
            assert isinstance(node, dict) and part in node, f"unresolvable $ref {ref}"
            node = node[part]
    ids = [op["operationId"] for item in SPEC["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids))


_PUBLIC_SECURITY = SPEC["paths"]["/health"]["get"]["security"]

# Successful answers that are not JSON: Prometheus text and pages for people.
NON_JSON_PAGES = {"/metrics", "/docs", "/"}


def test_every_operation_documents_its_errors_as_json():
    for method, path in OPERATIONS:
        responses = SPEC["paths"][path][method.lower()]["responses"]
        assert "200" in responses and "403" in responses and "500" in responses, (method, path)
        for status, response in responses.items():
            if status == "200" and "application/json" not in response["content"]:
                assert path in NON_JSON_PAGES, (method, path)
                continue
            schema = response["content"]["application/json"]["schema"]
            if int(status) >= 400:
                assert schema["allOf"][0] == {"$ref": "#/components/schemas/Error"}, (method, path, status)
                assert schema["allOf"][1]["properties"]["error"]["enum"], (method, path, status)
            if status in ("429", "503"):
                assert "Retry-After" in response["headers"], (method, path, status)


def test_openapi_json_is_served_in_every_mode(make_app):
    for app in (with_docs(make_app()), with_docs(make_app(production=True))):
        response = app.test_client().get("/openapi.json")
        assert response.status_code == 200
        assert response.mimetype == "application/json"
        assert response.get_json() == json.loads(json.dumps(SPEC))
        assert response.get_json()["info"]["version"] == __version__


# -- 2. routes and document agree ------------------------------------------------------------------------------------

_RULE_PARAM = re.compile(r"<(?:([a-z_]+)(?:\([^)]*\))?:)?([a-z_]+)>")
_SPEC_PARAM = re.compile(r"\{[^}]+\}")
_CONVERTER_TYPES = {"int": "integer", None: "string", "string": "string", "float": "number", "path": "string"}


def _app_routes(app) -> dict[str, tuple[set[str], list[str]]]:
    routes: dict[str, tuple[set[str], list[str]]] = {}
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        template = _RULE_PARAM.sub("{}", rule.rule)
        converters = [match.group(1) for match in _RULE_PARAM.finditer(rule.rule)]
        methods = set(rule.methods or ()) - {"HEAD", "OPTIONS"}
        known = routes.setdefault(template, (set(), converters))
        known[0].update(methods)
    return routes


def test_routes_and_document_agree(app):
    with_docs(app)
    routes = _app_routes(app)
    documented = {}
    for path, item in SPEC["paths"].items():
        documented[_SPEC_PARAM.sub("{}", path)] = ({method.upper() for method in item}, path, item)
    assert set(routes) == set(documented), (
        f"routes without a description: {sorted(set(routes) - set(documented))}; "
        f"described paths the app does not serve: {sorted(set(documented) - set(routes))}")
    for template, (methods, converters) in routes.items():
        spec_methods, path, item = documented[template]
        assert methods == spec_methods, (path, methods, spec_methods)
        for method in spec_methods:
            parameters = [p for p in item[method.lower()].get("parameters", []) if p["in"] == "path"]
            assert [p["name"] for p in parameters] == re.findall(r"\{([^}]+)\}", path), path
            assert [p["schema"]["type"] for p in parameters] == [_CONVERTER_TYPES[c] for c in converters], path


def test_undeclared_methods_answer_405_as_json(app):
    client = with_docs(app).test_client()
    for path, item in SPEC["paths"].items():
        concrete = _SPEC_PARAM.sub("1", path)
        allowed = {method.upper() for method in item}
        for method in set(HTTP_METHODS) - allowed:
            response = client.open(concrete, method=method)
            assert response.status_code == 405, (method, concrete, response.status_code)
            body = response.get_json()
            assert body["error"] == "method_not_allowed" and body["message"], body
            assert allowed <= set(response.headers["Allow"].replace(" ", "").split(",")), response.headers


# -- regressions for bugs the fuzz found (fixed), and known bugs (strict xfail) -----------------------------------------

def test_delete_with_an_id_beyond_64_bits_is_404(client):
    response = client.delete(f"/cache/{SQLITE_MAX_INT + 1}")
    assert response.status_code == 404, response.get_json()


def test_verify_with_an_id_beyond_64_bits_is_404(client):
    response = client.post("/verify", json={"id": SQLITE_MAX_INT + 1, "manual_bpm": 100})
    assert response.status_code == 404, response.get_json()


def test_lone_surrogate_in_analyze_json_is_400(client):
    response = client.post("/analyze", data='{"url": "http://example.com/\\ud800.mp3"}',
                           content_type="application/json")
    assert response.status_code == 400, response.get_json()


def test_lone_surrogate_in_verify_json_is_400(client):
    seed(client)
    answers = [client.post("/verify", data=body, content_type="application/json") for body in (
        '{"url": "upload:\\ud800"}', '{"id": 1, "bpm_notes": "half-time \\ud800"}')]
    assert [r.status_code for r in answers] == [400, 400], [r.get_json() for r in answers]


def test_search_with_a_nul_character_is_not_a_server_error(client):
    seed(client)
    for q in ("abc\x00", "\x00Seed", "\x00\x00\x00"):
        response = client.get("/cache/search", query_string={"q": q})
        assert response.status_code in (200, 400), (q, response.status_code, response.get_json())


# -- 3. the fuzz -------------------------------------------------------------------------------------------------------

def header(response, name: str) -> str:
    """A header of a schemathesis Response (lower-case names, list values)."""
    return response.headers[name.lower()][0]


def _strict_json(response) -> None:
    """JSON bodies parse without NaN/Infinity (strict clients reject them)."""
    if header(response, "Content-Type").startswith("application/json"):
        def reject(constant):
            raise AssertionError(f"{constant} in a JSON body")
        json.loads(response.content.decode("utf-8"), parse_constant=reject)


def _settings(examples: int) -> hypothesis.settings:
    return hypothesis.settings(
        max_examples=examples, derandomize=True, deadline=None, database=None, print_blob=True,
        suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate, Phase.shrink])


class Tally:
    def __init__(self, label: str, mode: str):
        self.label, self.mode = label, mode
        self.examples = 0
        self.statuses: collections.Counter[int] = collections.Counter()
        self.known: collections.Counter[str] = collections.Counter()

    def write(self, failure: str | None) -> None:
        if FUZZ_REPORT:
            with open(FUZZ_REPORT, "a", encoding="utf-8") as out:
                out.write(json.dumps({"operation": self.label, "mode": self.mode, "examples": self.examples,
                                      "statuses": dict(sorted(self.statuses.items())),
                                      "known_bugs": dict(self.known), "failure": failure}) + "\n")


def _fuzz(schema, label: str, mode: GenerationMode, before_each, headers_strategy=None) -> Tally:
    method, path = label.split(" ", 1)
    operation = schema[path][method]
    tally = Tally(label, mode.value)
    extra_headers = headers_strategy if headers_strategy is not None else st.just({})

    @_settings(FUZZ_EXAMPLES)
    @given(case=operation.as_strategy(generation_mode=mode), headers=extra_headers)
    def run(case, headers):
        before_each()
        if headers:
            case.headers = {**(case.headers or {}), **headers}
        response = case.call()
        tally.examples += 1
        bug = known_bug(case, response)
        if bug is not None:
            tally.known[bug] += 1
            return
        tally.statuses[response.status_code] += 1
        _strict_json(response)
        case.validate_response(response, checks=CHECKS)

    try:
        run()
    except BaseException as error:
        tally.write(f"{type(error).__name__}: {str(error)[:2000]}")
        raise
    tally.write(None)
    return tally


def _has_inputs(method: str, path: str) -> bool:
    operation = SPEC["paths"][path][method.lower()]
    return bool(operation.get("parameters") or operation.get("requestBody"))


# Negative (invalid) requests only where there is something to get wrong: parameters or a body.
DEV_FUZZ = [pytest.param(f"{method} {path}", mode, id=f"{method} {path}-{mode.value}")
            for method, path in OPERATIONS
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
            if mode is GenerationMode.POSITIVE or _has_inputs(method, path)]


@pytest.mark.parametrize(("label", "mode"), DEV_FUZZ)
def test_fuzz_development_mode(dev_app, label, mode):
    schema = schemathesis.openapi.from_wsgi("/openapi.json", dev_app)
    client = dev_app.test_client()
    state = {"calls": 0}

    def before_each():
        # Re-seed after a clear or delete so the operations with data keep being exercised.
        state["calls"] += 1
        if label in ("DELETE /cache/{id}", "POST /cache/clear", "POST /verify") and state["calls"] % 5 == 0:
            seed(client)

    seed(client)
    tally = _fuzz(schema, label, mode, before_each)
    assert tally.examples > 0
    # 5xx only as /analyze's documented upstream failure (502 download_failed; its code was checked per response).
    assert not {s for s in tally.statuses if s >= 500 and (label, s) != ("POST /analyze", 502)}, tally.statuses


@pytest.mark.parametrize("label", [f"{method} {path}" for method, path in OPERATIONS])
def test_fuzz_production_mode(prod_app, label):
    """Every operation, valid requests, with no key, a made-up key, a deactivated key, a user key, an admin key."""
    keys = prod_app.config["FUZZ_KEYS"]
    schema = schemathesis.openapi.from_wsgi("/openapi.json", prod_app)
    client = prod_app.test_client()
    admin = {"X-API-Key": keys["admin"]}
    key_headers = st.sampled_from([
        {"X-API-Key": ""}, {"X-API-Key": "ess_made-up-key"}, {"X-API-Key": keys["inactive"]},
        {"X-API-Key": keys["user"]}, admin, admin,
    ])
    seed(client, admin)
    tally = _fuzz(schema, label, GenerationMode.POSITIVE, lambda: None, key_headers)
    method, path = label.split(" ", 1)
    if SPEC["paths"][path][method.lower()]["security"] != _PUBLIC_SECURITY:
        # 25 draws of six key headers need not include both refusals: ask once with each as well, so the
        # assertion does not depend on what the generator happened to draw.
        url = path.replace("{id}", "1")
        probes = {client.open(url, method=method, headers=headers).status_code
                  for headers in ({"X-API-Key": ""}, {"X-API-Key": keys["inactive"]})}
        statuses = set(tally.statuses) | probes
        assert 401 in statuses and 403 in statuses, (tally.statuses, probes)


def test_rate_limit_and_quota_answers_conform(make_app, network_guard):
    """429 from the rate limiter and from the daily quota, with Retry-After and X-RateLimit-*, per the document."""
    app = with_docs(make_app(production=True, rate_limit=2))
    schema = schemathesis.openapi.from_wsgi("/openapi.json", app)
    operation = schema["/stats"]["GET"]
    key = create_key(app, "limited", "--daily-limit", "0")
    answers = []
    for _ in range(3):
        case = operation.Case(headers={"X-API-Key": key})
        response = case.call()
        case.validate_response(response, checks=CHECKS)
        answers.append(response)
    assert [r.status_code for r in answers] == [200, 200, 429]
    assert answers[2].json()["error"] == "rate_limited"
    assert int(header(answers[2], "Retry-After")) >= 0
    assert header(answers[2], "X-RateLimit-Limit") == "2" and header(answers[2], "X-RateLimit-Remaining") == "0"

    app = with_docs(make_app(production=True, rate_limit=0))
    schema = schemathesis.openapi.from_wsgi("/openapi.json", app)
    operation = schema["/cache"]["GET"]
    key = create_key(app, "quota", "--daily-limit", "1")
    statuses = []
    for _ in range(2):
        case = operation.Case(headers={"X-API-Key": key})
        response = case.call()
        case.validate_response(response, checks=CHECKS)
        statuses.append((response.status_code, response.json()))
    assert statuses[0][0] == 200
    assert statuses[1][0] == 429 and statuses[1][1]["error"] == "daily_quota_exceeded"


@pytest.fixture
def audio_server():
    """http://127.0.0.1:<port>/song.wav serving the seed WAV."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "audio/wav")
            self.send_header("Content-Length", str(len(SEED_WAV)))
            self.end_headers()
            self.wfile.write(SEED_WAV)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/song.wav"
    server.shutdown()
    server.server_close()


def test_real_analyses_conform(make_app, network_guard, audio_server):
    """The 200 paths with real audio, through schemathesis cases: raw body (octet-stream and audio/*), multipart,
    ?detail=1, a cache hit, a URL on a loopback server (allowed by setting here only), then every cache endpoint
    with data in it."""
    app = with_docs(make_app(allow_loopback_urls=True))
    schema = schemathesis.openapi.from_wsgi("/openapi.json", app)

    def call(label: str, **kwargs):
        method, path = label.split(" ", 1)
        case = schema[path][method].Case(**kwargs)
        response = case.call()
        _strict_json(response)
        case.validate_response(response, checks=CHECKS)
        return response.json()

    title = "坂本龍一".encode("utf-8").decode("latin-1")
    first = call("POST /analyze_data", body=SEED_WAV, media_type="application/octet-stream",
                 headers={"X-Song-Title": title}, query={"detail": "1"})
    assert first["cached"] is False and first["title"] == "坂本龍一" and first["detail"]["beat_times"]
    again = call("POST /analyze_data", body=SEED_WAV, media_type="audio/*")
    assert again["cached"] is True and again["id"] == first["id"] and "detail" not in again
    other = synth.wav_bytes(synth.song(96, "C", "major", seconds=6))
    form = call("POST /analyze_data", body={"file": other, "title": "Halo", "artist": "Beyoncé"},
                media_type="multipart/form-data")
    assert form["cached"] is False and form["artist"] == "Beyoncé" and form["id"] != first["id"]
    by_url = call("POST /analyze", body={"url": audio_server, "title": "By URL"})
    assert by_url["cached"] is False and by_url["preview_url"] == audio_server
    assert call("POST /analyze", body={"url": audio_server})["cached"] is True

    verified = call("POST /verify", body={"url": audio_server, "manual_bpm": 60, "manual_key": "Gb maj"})
    assert verified["song"]["manual_key"] == "F# Major" and verified["song"]["user_verified"] is True
    assert len(call("GET /cache", query={"sort": "bpm", "limit": 2})) == 2
    assert [row["title"] for row in call("GET /cache/search", query={"q": "HALO"})] == ["Halo"]
    export = call("GET /cache/export")
    assert export["total_songs"] == 3 and {song["bpm"] for song in export["songs"]} >= {60}
    stats = call("GET /stats")
    assert stats["total_cached_songs"] == 3 and stats["cache_hits"] == 2
    assert call("DELETE /cache/{id}", path_parameters={"id": form["id"]})["success"] is True
    assert call("POST /cache/clear")["removed"] == 2
    assert call("GET /cache") == []


def test_error_paths_conform(make_app, network_guard, monkeypatch):
    """The documented error answers the fuzz rarely reaches, each validated against the document."""
    from backend.runtime.executor import ServerBusy

    app = with_docs(make_app(max_upload_mb=1))
    schema = schemathesis.openapi.from_wsgi("/openapi.json", app)

    def expect(label: str, status: int, code: str, **kwargs):
        method, path = label.split(" ", 1)
        case = schema[path][method].Case(**kwargs)
        response = case.call()
        _strict_json(response)
        # 503 is the documented answer to an overload; every other status also passes the no-5xx check.
        case.validate_response(response, checks=CONFORMANCE if status == 503 else CHECKS)
        assert (response.status_code, response.json()["error"]) == (status, code), response.json()
        return response

    octet = {"media_type": "application/octet-stream"}
    expect("POST /analyze_data", 400, "empty_audio", body=b"", **octet)
    expect("POST /analyze_data", 415, "unsupported_format", body=b"hello, not audio", **octet)
    expect("POST /analyze_data", 422, "truncated_audio", body=SEED_WAV[: len(SEED_WAV) // 2], **octet)
    expect("POST /analyze_data", 413, "payload_too_large", body=b"\0" * (2 * 1024 * 1024), **octet)
    expect("POST /analyze_data", 400, "missing_file", body={"title": "no file"}, media_type="multipart/form-data")
    expect("POST /analyze", 400, "missing_url", body={"title": "no url"}, media_type="application/json")
    expect("POST /analyze", 400, "invalid_url", body={"url": "ftp://example.com/a.mp3"})
    expect("POST /analyze", 400, "blocked_address", body={"url": "http://169.254.169.254/latest/meta-data"})
    expect("POST /analyze", 400, "blocked_address", body={"url": "https://example.org/preview.m4a"})  # stub DNS
    expect("POST /analyze", 502, "download_failed", body={"url": "http://93.184.215.14/preview.m4a"})  # refused
    expect("GET /cache", 400, "invalid_parameter", query={"limit": 0})
    expect("GET /cache/search", 400, "missing_query", query={"q": " "})
    expect("DELETE /cache/{id}", 404, "not_found", path_parameters={"id": 424242})
    expect("POST /verify", 400, "missing_song", body={"manual_bpm": 100})
    expect("POST /verify", 400, "invalid_parameter", body={"id": 1, "manual_key": "H minor"})
    expect("POST /verify", 404, "not_found", body={"id": 424242, "manual_bpm": 100})
    if importlib.util.find_spec("backend.web.hooks") is not None:  # development mode's cross-site guard
        expect("POST /analyze", 403, "cross_site_request", body={"url": "https://example.com/a.m4a"},
               headers={"Origin": "https://evil.example"})

    def busy(*args, **kwargs):
        raise ServerBusy("The server is analyzing as many songs as it can; try again shortly.", retry_after=2)

    monkeypatch.setattr(app.extensions["essentia"].executor, "run", busy)
    response = expect("POST /analyze_data", 503, "server_busy", body=SEED_WAV + b"\0\0", **octet)
    assert header(response, "Retry-After") == "2"
    assert "93.184.215.14:80" in network_guard.refused


def _fake_server(status: str, body: Any, headers: dict[str, str] | None = None):
    """A WSGI app answering every request the same way, to prove the checks reject what they should."""
    def app(environ, start_response):
        payload = body if isinstance(body, bytes) else json.dumps(body).encode()
        start_response(status, [("Content-Type", "application/json"), *(headers or {}).items()])
        return [payload]
    return app


HEALTHY = {"status": "healthy", "running": True, "port": 5050, "version": "1.0.0", "uptime": 1.5,
           "timestamp": "2026-01-01T00:00:00Z"}


@pytest.mark.parametrize(("path", "status", "body", "headers"), [
    ("/health", "200 OK", HEALTHY, None),
    ("/stats", "429 Too Many Requests", {"error": "rate_limited", "message": "slow down"}, {"Retry-After": "3"}),
], ids=["health-ok", "429-with-retry-after"])
def test_checks_accept_a_conforming_response(path, status, body, headers):
    schema = schemathesis.openapi.from_dict(SPEC)
    schema.app = _fake_server(status, body, headers)
    case = schema[path]["GET"].Case()
    case.validate_response(case.call(), checks=CHECKS)


@pytest.mark.parametrize(("path", "status", "body", "headers"), [
    ("/health", "200 OK", {**HEALTHY, "port": "5050"}, None),                        # wrong type
    ("/health", "200 OK", {key: v for key, v in HEALTHY.items() if key != "uptime"}, None),  # missing field
    ("/health", "418 I'm a teapot", {"error": "teapot", "message": "no"}, None),     # undocumented status
    ("/health", "200 OK", b"<html>healthy</html>", {"Content-Type": "text/html"}),   # not JSON
    ("/stats", "429 Too Many Requests", {"error": "rate_limited", "message": "slow down"}, None),  # no Retry-After
    ("/stats", "403 Forbidden", {"error": "nope", "message": "no"}, None),           # undocumented error code
    ("/stats", "403 Forbidden", {"message": "no"}, None),                             # error body without a code
    ("/cache", "200 OK", [{"id": 1}], None),                                          # row missing the contract
], ids=["wrong-type", "missing-field", "undocumented-status", "html", "no-retry-after", "unknown-code",
        "no-code", "short-row"])
def test_checks_reject_a_response_that_breaks_the_contract(path, status, body, headers):
    schema = schemathesis.openapi.from_dict(SPEC)
    schema.app = _fake_server(status, body, headers)
    case = schema[path]["GET"].Case()
    with pytest.raises(FailureGroup):
        case.validate_response(case.call(), checks=CHECKS)


def test_no_request_left_the_machine(network_guard):
    """Runs after the fuzz (file order): the guard saw no outbound connection; DNS was only ever the stub."""
    assert not network_guard.violations, network_guard.violations
