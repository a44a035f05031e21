"""schemathesis against kaji's own OpenAPI v3 documents.

Every operation of the chosen group-versions gets generated requests, valid
(positive) and deliberately invalid (negative: wrong types, missing required
fields, bad query values). Each answer must:

  * not be a 5xx (schemathesis' `not_a_server_error`);
  * when it is an error (4xx/5xx), be a Kubernetes `Status` with
    `kind: Status`, `apiVersion: v1`, `status: Failure`, `code` equal to
    the HTTP status and a `reason` (`status_error_body`, below).

After all operations the server must still be ready and serve a normal
create/get (test_zz_server_still_healthy).

Knobs (environment):

  KAJI_ST_GROUP_VERSIONS  comma-separated `api/v1,apis/apps/v1,...` or `all`
                          (every entry of /openapi/v3); default: the short
                          set below
  KAJI_ST_PATHS           regex an operation's path must match; default: the
                          short set of resources below; `all` for everything
  KAJI_ST_MAX_EXAMPLES    generated requests per operation and mode (default 5)
  KAJI_ST_PHASES          schemathesis phases (default `examples,fuzzing`;
                          `coverage` adds boundary and missing-value cases for
                          every parameter, built while collecting: slow on
                          Pod-sized schemas, use it with a narrow KAJI_ST_PATHS)
  KAJI_ST_BUDGET          seconds after which the remaining operations are
                          skipped (default: no budget)

Excluded, and why:

  * `watch=true` is dropped from generated queries: a valid watch is a
    stream that stays open until `timeoutSeconds` (up to 30 minutes), which
    is not a request/response exchange; watch parameter errors are covered
    by the raw corpus (test_raw_corpus.py).
  * exec/attach/portforward/proxy (connection upgrades) and pods/log
    streaming are not in kaji's OpenAPI documents at all, so they are never
    generated; the raw corpus sends them malformed requests instead.
  * DELETE on the namespaces collection: a valid one deletes `default` and
    `kube-system`, which would make every later test measure namespace
    teardown instead of input handling.
"""

import os
import time
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from conftest import assert_healthy, assert_status_body, settings_from_env

SHORT_GROUP_VERSIONS = "api/v1,apis/apps/v1,apis/apiextensions.k8s.io/v1"
SHORT_PATHS = "|".join(
    (
        r"^/api/v1/(namespaces/\{namespace\}/)?(configmaps|pods)(/|$)",
        r"^/api/v1/namespaces(/\{name\}(/.*)?)?$",
        r"^/apis/apps/v1/(namespaces/\{namespace\}/)?deployments(/|$)",
        r"^/apis/apiextensions\.k8s\.io/v1/customresourcedefinitions(/|$)",
    )
)

MAX_EXAMPLES = int(os.environ.get("KAJI_ST_MAX_EXAMPLES", "5"))
PHASES = os.environ.get("KAJI_ST_PHASES", "examples,fuzzing").split(",")
# A time budget (seconds) after which the remaining operations are skipped,
# so a long run ends with a report and the health check instead of a kill.
BUDGET_END = time.monotonic() + float(os.environ["KAJI_ST_BUDGET"]) if os.environ.get("KAJI_ST_BUDGET") else None


def _documents(session, url):
    wanted = os.environ.get("KAJI_ST_GROUP_VERSIONS", SHORT_GROUP_VERSIONS)
    if wanted == "all":
        index = session.get(f"{url}/openapi/v3", timeout=30)
        index.raise_for_status()
        wanted = ",".join(index.json()["paths"].keys())
    for gv in filter(None, (w.strip().strip("/") for w in wanted.split(","))):
        r = session.get(f"{url}/openapi/v3/{gv}", timeout=60)
        assert r.status_code == 200, f"/openapi/v3/{gv}: {r.status_code}"
        yield r.json()


def _merged(docs):
    """One OpenAPI document with the paths and schemas of several group
    versions (their component names are globally unique, as in Kubernetes)."""
    merged = {"openapi": "3.0.0", "info": {"title": "kaji", "version": "v1"}, "paths": {}, "components": {"schemas": {}}}
    for doc in docs:
        merged["paths"].update(doc.get("paths", {}))
        merged["components"]["schemas"].update(doc.get("components", {}).get("schemas", {}))
        for kind, values in doc.get("components", {}).items():
            if kind != "schemas":
                merged["components"].setdefault(kind, {}).update(values)
    return merged


def _load_schema():
    """Loaded at import (module-level parametrization: schemathesis' lazy
    `from_fixture` does not work with pytest 9)."""
    url, ca, cert, key = settings_from_env()
    s = requests.Session()
    s.trust_env = False
    s.verify = ca
    s.cert = (cert, key)
    loaded = schemathesis.openapi.from_dict(_merged(_documents(s, url)))
    loaded.config.generation.update(
        modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
        max_examples=MAX_EXAMPLES,
    )
    loaded.config.phases.update(phases=PHASES)
    paths = os.environ.get("KAJI_ST_PATHS", SHORT_PATHS)
    if paths != "all":
        loaded = loaded.include(path_regex=paths)
    return loaded.exclude(method="DELETE", path="/api/v1/namespaces")


schema = _load_schema()


CODES = {}


@schemathesis.check
def status_error_body(ctx, response, case):
    """Errors are Kubernetes Status objects for the very same code."""
    CODES[response.status_code] = CODES.get(response.status_code, 0) + 1
    if response.status_code >= 400:
        assert_status_body(response.status_code, response.content, f"{case.method} {case.formatted_path}")
    return None


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=False,
    suppress_health_check=list(HealthCheck),
    database=None,
)
def test_operation(case, session, kaji):
    if BUDGET_END is not None and time.monotonic() > BUDGET_END:
        pytest.skip("KAJI_ST_BUDGET spent")
    if case.query:
        # Watch streams stay open: see the module docstring.
        case.query.pop("watch", None)
    url, ca, cert, key = kaji
    response = case.call(base_url=url, session=session, verify=ca, cert=(cert, key), timeout=30)
    case.validate_response(response, checks=[not_a_server_error, status_error_body])


def test_zz_server_still_healthy(session, kaji):
    """Runs last (pytest keeps file order): the server survived it all."""
    print(f"schemathesis answers by HTTP status: {dict(sorted(CODES.items()))}")
    assert_healthy(session, kaji[0])
