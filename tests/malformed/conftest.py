"""Shared fixtures for the malformed-input tests against a running kaji.

The server comes from the environment (crates/kaji/tests/malformed.rs and
scripts/schemathesis.sh start one and set these):

  KAJI_URL   https://127.0.0.1:PORT
  KAJI_CA    the cluster CA (PEM file)
  KAJI_CERT  the admin client certificate (PEM file)
  KAJI_KEY   the admin client key (PEM file)
"""

import json
import os

import pytest
import requests


def settings_from_env():
    url = os.environ.get("KAJI_URL")
    if not url:
        pytest.skip("KAJI_URL is not set: start kaji and set KAJI_URL/KAJI_CA/KAJI_CERT/KAJI_KEY", allow_module_level=True)
    return url.rstrip("/"), os.environ["KAJI_CA"], os.environ["KAJI_CERT"], os.environ["KAJI_KEY"]


@pytest.fixture(scope="session")
def kaji():
    """(url, ca, cert, key)."""
    return settings_from_env()


@pytest.fixture(scope="session")
def session(kaji):
    """A requests session with the admin credentials, ignoring proxy and CA
    bundle environment variables (only loopback is ever contacted)."""
    url, ca, cert, key = kaji
    s = requests.Session()
    s.trust_env = False
    s.verify = ca
    s.cert = (cert, key)
    return s


def assert_status_body(code, body, context=""):
    """An error answer must be a Kubernetes `Status` for that very code."""
    try:
        status = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise AssertionError(f"{context}: HTTP {code} body is not JSON ({e}): {body[:300]!r}")
    assert isinstance(status, dict), f"{context}: HTTP {code} body is not an object: {status!r}"
    for key, want in (("kind", "Status"), ("apiVersion", "v1"), ("status", "Failure"), ("code", code)):
        assert status.get(key) == want, f"{context}: HTTP {code}: Status.{key} is {status.get(key)!r}, want {want!r}: {status}"
    assert isinstance(status.get("reason"), str) and status["reason"], f"{context}: HTTP {code}: no reason: {status}"
    assert isinstance(status.get("message"), str), f"{context}: HTTP {code}: no message: {status}"


def assert_healthy(session, url):
    """/readyz answers 200 and a normal create/get/delete round trip works."""
    r = session.get(f"{url}/readyz", timeout=10)
    assert r.status_code == 200, f"/readyz: {r.status_code} {r.text[:300]}"
    name = "malformed-health-probe"
    cms = f"{url}/api/v1/namespaces/default/configmaps"
    session.delete(f"{cms}/{name}", timeout=10)
    r = session.post(cms, json={"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"ok": "yes"}}, timeout=10)
    assert r.status_code == 201, f"create after the corpus: {r.status_code} {r.text[:300]}"
    r = session.get(f"{cms}/{name}", timeout=10)
    assert r.status_code == 200 and r.json()["data"] == {"ok": "yes"}, f"get after the corpus: {r.status_code} {r.text[:300]}"
    r = session.delete(f"{cms}/{name}", timeout=10)
    assert r.status_code in (200, 202), f"delete after the corpus: {r.status_code} {r.text[:300]}"
