"""A corpus of malformed HTTP requests, sent as raw bytes over TLS sockets.

Each case names the status code kube-apiserver answers (where kaji knowingly
differs, the case says so). Whenever the request reaches the API layer the
answer must be a Kubernetes `Status` for that code; HTTP framing errors that
the HTTP/1 codec itself rejects (header floods, broken request lines) get a
bare 4xx and a closed connection, as from Go's net/http. Nothing may hang:
every socket has a deadline.

Writes that are rejected must leave nothing behind: created names are checked
to be absent, and the `victim` ConfigMap that every broken PATCH/PUT/DELETE
targets must keep its resourceVersion. The last test checks the server is
still ready and serves a normal create/get.
"""

import json
import socket
import ssl
import time

import pytest

from conftest import assert_healthy, assert_status_body

NS = "default"
CMS = f"/api/v1/namespaces/{NS}/configmaps"
VICTIM = f"{CMS}/victim"
DEPLOYS = f"/apis/apps/v1/namespaces/{NS}/deployments"
LIMIT = 3 * 1024 * 1024  # kaji's (and etcd's default) request body limit


class Answer:
    def __init__(self, code, headers, body):
        self.code, self.headers, self.body = code, headers, body

    def __repr__(self):
        return f"HTTP {self.code} {self.body[:300]!r}"


def _context(kaji, with_cert=True):
    _, ca, cert, key = kaji
    ctx = ssl.create_default_context(cafile=ca)
    ctx.check_hostname = False
    if with_cert:
        ctx.load_cert_chain(cert, key)
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def _port(kaji):
    return int(kaji[0].rsplit(":", 1)[1].rstrip("/"))


def _read_answer(sock, deadline):
    """Reads one HTTP/1.1 response (or None if the connection closed first)."""
    data = b""
    while b"\r\n\r\n" not in data:
        sock.settimeout(max(0.1, deadline - time.monotonic()))
        chunk = sock.recv(65536)
        if not chunk:
            return None
        data += chunk
    head, rest = data.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    code = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers.setdefault(k.strip().lower(), []).append(v.strip())

    def more():
        sock.settimeout(max(0.1, deadline - time.monotonic()))
        chunk = sock.recv(65536)
        if not chunk:
            raise EOFError
        return chunk

    if "content-length" in headers:
        n = int(headers["content-length"][0])
        while len(rest) < n:
            rest += more()
        return Answer(code, headers, rest[:n])
    if "chunked" in ",".join(headers.get("transfer-encoding", [])):
        body = b""
        while True:
            while b"\r\n" not in rest:
                rest += more()
            size_line, rest = rest.split(b"\r\n", 1)
            size = int(size_line.split(b";")[0], 16)
            while len(rest) < size + 2:
                rest += more()
            body += rest[:size]
            rest = rest[size + 2 :]
            if size == 0:
                return Answer(code, headers, body)
    try:
        while True:
            rest += more()
    except (EOFError, OSError):
        pass
    return Answer(code, headers, rest)


def send_raw(kaji, raw, *, with_cert=True, timeout=20.0):
    """Sends `raw` bytes on a fresh TLS connection and reads one answer."""
    deadline = time.monotonic() + timeout
    with socket.create_connection(("127.0.0.1", _port(kaji)), timeout=timeout) as tcp:
        with _context(kaji, with_cert).wrap_socket(tcp) as sock:
            try:
                sock.sendall(raw)
            except (BrokenPipeError, ConnectionResetError, ssl.SSLEOFError):
                pass  # the server answered and closed before reading it all
            try:
                return _read_answer(sock, deadline)
            except (ConnectionResetError, ssl.SSLError, EOFError, TimeoutError):
                return None


def request(kaji, method, path, body=b"", content_type="application/json", headers=(), **kw):
    if isinstance(body, str):
        body = body.encode()
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close", "Accept: application/json"]
    if content_type is not None:
        lines.append(f"Content-Type: {content_type}")
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body)}")
    lines.extend(headers)
    return send_raw(kaji, ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body, **kw)


def expect(answer, codes, context):
    codes = (codes,) if isinstance(codes, int) else codes
    assert answer is not None, f"{context}: connection closed without an answer"
    assert answer.code in codes, f"{context}: got {answer}, want {codes}"
    assert_status_body(answer.code, answer.body, context)


def absent(kaji, path):
    got = request(kaji, "GET", path, content_type=None)
    assert got is not None and got.code == 404, f"{path} exists after a rejected write: {got}"


def cm(name, **extra):
    return json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, **extra})


@pytest.fixture(scope="module")
def victim(kaji):
    request(kaji, "DELETE", VICTIM, content_type=None)
    got = request(kaji, "POST", CMS, cm("victim", data={"k": "v"}))
    assert got is not None and got.code == 201, got
    created = json.loads(got.body)
    yield created["metadata"]["resourceVersion"]


def victim_unchanged(kaji, rv):
    got = request(kaji, "GET", VICTIM, content_type=None)
    assert got is not None and got.code == 200, got
    obj = json.loads(got.body)
    assert obj["metadata"]["resourceVersion"] == rv and obj["data"] == {"k": "v"}, f"victim changed: {obj}"


def nested(depth):
    return '{"metadata":{"name":"deep"},"data":' + "[" * depth + "]" * depth + "}"


def laughs():
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 10):
        lines.append(f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]")
    return "\n".join(lines) + "\nmetadata: {name: laughs}\n"


def deployment(name, replicas):
    return (
        '{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"%s"},"spec":{"replicas":%s,'
        '"selector":{"matchLabels":{"a":"b"}},"template":{"metadata":{"labels":{"a":"b"}},'
        '"spec":{"containers":[{"name":"c","image":"busybox"}]}}}}' % (name, replicas)
    )


# (id, method, path, content type, body, expected code(s), path that must not exist afterwards)
BODIES = [
    ("invalid-json", "POST", CMS, "application/json", "{not json", 400, None),
    ("truncated-json", "POST", CMS, "application/json", '{"metadata":{"name":"trunc"},"data":{"k":"v', 400, f"{CMS}/trunc"),
    ("top-level-array", "POST", CMS, "application/json", "[]", 400, None),
    ("top-level-string", "POST", CMS, "application/json", '"configmap"', 400, None),
    ("top-level-number", "POST", CMS, "application/json", "42", 400, None),
    ("top-level-null", "POST", CMS, "application/json", "null", 400, None),
    ("empty-body", "POST", CMS, "application/json", "", 400, None),
    # Go's decoder replaces invalid UTF-8 with U+FFFD and kube-apiserver
    # accepts it (201); kaji refuses bytes it cannot store faithfully (400).
    ("invalid-utf8", "POST", CMS, "application/json", b'{"metadata":{"name":"utf8"},"data":{"k":"\xff\xfe"}}', 400, f"{CMS}/utf8"),
    ("nested-json-10000", "POST", CMS, "application/json", nested(10000), 400, f"{CMS}/deep"),
    ("nested-yaml-10000", "POST", CMS, "application/yaml", "metadata: {name: deep}\ndata: " + "{a: " * 10000 + "}" * 10000, 400, f"{CMS}/deep"),
    ("nested-yaml-block", "POST", CMS, "application/yaml", "".join(f"{'  ' * i}a:\n" for i in range(300)), 400, None),
    ("yaml-billion-laughs", "POST", CMS, "application/yaml", laughs(), 400, f"{CMS}/laughs"),
    ("number-out-of-range", "POST", CMS, "application/json", cm("huge", data={"k": "v"}).replace('"v"', "1e999"), 400, f"{CMS}/huge"),
    ("int32-overflow", "POST", DEPLOYS, "application/json", deployment("huge", "99999999999999999999"), 400, f"{DEPLOYS}/huge"),
    ("int32-overflow-2", "POST", DEPLOYS, "application/json", deployment("huge", "4294967296"), 400, f"{DEPLOYS}/huge"),
    ("fraction-for-int", "POST", DEPLOYS, "application/json", deployment("huge", "1.5"), 400, f"{DEPLOYS}/huge"),
    ("wrong-field-type", "POST", CMS, "application/json", '{"metadata":{"name":"wt"},"data":{"k":1}}', 400, f"{CMS}/wt"),
    ("metadata-not-object", "POST", CMS, "application/json", '{"metadata":[]}', 400, None),
    ("duplicate-keys-strict", "POST", CMS + "?fieldValidation=Strict", "application/json", '{"metadata":{"name":"dup1","name":"dup2"}}', 400, f"{CMS}/dup2"),
    ("wrong-apiversion", "POST", CMS, "application/json", '{"apiVersion":"apps/v1","kind":"ConfigMap","metadata":{"name":"wav"}}', 400, f"{CMS}/wav"),
    ("wrong-kind", "POST", CMS, "application/json", '{"apiVersion":"v1","kind":"Pod","metadata":{"name":"wk"}}', 400, f"{CMS}/wk"),
    ("wrong-kind-for-group", "POST", DEPLOYS, "application/json", '{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"wg"}}', 400, f"{DEPLOYS}/wg"),
    ("namespace-mismatch", "POST", CMS, "application/json", '{"metadata":{"name":"nsm","namespace":"kube-system"}}', 400, "/api/v1/namespaces/kube-system/configmaps/nsm"),
    ("name-not-dns", "POST", CMS, "application/json", cm("Not_A_DNS_Name"), 422, None),
    ("name-too-long", "POST", CMS, "application/json", cm("a" * 300), 422, None),
    ("name-with-slash", "POST", CMS, "application/json", cm("a/b"), 422, None),
    ("name-dotdot", "POST", CMS, "application/json", cm(".."), 422, None),
    ("generate-name-not-dns", "POST", CMS, "application/json", '{"metadata":{"generateName":"Bad_"}}', 422, None),
    ("label-key-invalid", "POST", CMS, "application/json", '{"metadata":{"name":"lk","labels":{"-bad-":"x"}}}', 422, f"{CMS}/lk"),
    ("no-name", "POST", CMS, "application/json", "{}", 422, None),
    ("unknown-content-type", "POST", CMS, "application/xml", "<configmap/>", 415, None),
    ("text-plain", "POST", CMS, "text/plain", cm("tp"), 415, f"{CMS}/tp"),
    ("malformed-content-type", "POST", CMS, ";;;", cm("mct"), 415, f"{CMS}/mct"),
    ("content-type-no-subtype", "POST", CMS, "application", cm("mct"), 415, f"{CMS}/mct"),
    ("protobuf-garbage", "POST", CMS, "application/vnd.kubernetes.protobuf", b"\x00\x01garbage\xff", 400, None),
    ("protobuf-magic-then-garbage", "POST", CMS, "application/vnd.kubernetes.protobuf", b"k8s\x00\x0a\xff\xff\xff\xff\x0f\x12\x01", 400, None),
    ("protobuf-empty", "POST", CMS, "application/vnd.kubernetes.protobuf", b"", 400, None),
    ("json-for-put-of-other-name", "PUT", VICTIM, "application/json", cm("other", data={"k": "x"}), 400, f"{CMS}/other"),
    ("put-invalid-json", "PUT", VICTIM, "application/json", "{", 400, None),
    ("put-stale-rv", "PUT", VICTIM, "application/json", '{"metadata":{"name":"victim","resourceVersion":"1"},"data":{"k":"x"}}', 409, None),
    ("put-rv-garbage", "PUT", VICTIM, "application/json", '{"metadata":{"name":"victim","resourceVersion":"xyz"},"data":{"k":"x"}}', (400, 409, 422), None),
    # The four patch types, broken.
    ("json-patch-not-json", "PATCH", VICTIM, "application/json-patch+json", "[{", 400, None),
    ("json-patch-object", "PATCH", VICTIM, "application/json-patch+json", "{}", 400, None),
    # kube-apiserver: an unknown op decodes and fails when applied (422); kaji rejects it while decoding (400).
    ("json-patch-unknown-op", "PATCH", VICTIM, "application/json-patch+json", '[{"op":"bogus","path":"/data"}]', (400, 422), None),
    ("json-patch-missing-path", "PATCH", VICTIM, "application/json-patch+json", '[{"op":"replace","path":"/no/such","value":1}]', 422, None),
    ("json-patch-failed-test", "PATCH", VICTIM, "application/json-patch+json", '[{"op":"test","path":"/data/k","value":"nope"},{"op":"replace","path":"/data/k","value":"x"}]', 422, None),
    ("json-patch-bad-pointer", "PATCH", VICTIM, "application/json-patch+json", '[{"op":"add","path":"data~2k","value":"x"}]', (400, 422), None),
    ("json-patch-rename", "PATCH", VICTIM, "application/json-patch+json", '[{"op":"replace","path":"/metadata/name","value":"x"}]', 400, None),
    ("merge-patch-not-json", "PATCH", VICTIM, "application/merge-patch+json", '{"data":', 400, None),
    ("merge-patch-array", "PATCH", VICTIM, "application/merge-patch+json", "[1,2]", 400, None),
    ("merge-patch-wrong-type", "PATCH", VICTIM, "application/merge-patch+json", '{"data":{"k":{"x":1}}}', 400, None),
    ("merge-patch-deep", "PATCH", VICTIM, "application/merge-patch+json", nested(10000), 400, None),
    ("merge-patch-bad-label", "PATCH", VICTIM, "application/merge-patch+json", '{"metadata":{"labels":{"a b":"c"}}}', 422, None),
    ("strategic-patch-not-json", "PATCH", VICTIM, "application/strategic-merge-patch+json", "{{", 400, None),
    ("strategic-patch-string", "PATCH", VICTIM, "application/strategic-merge-patch+json", '"x"', 400, None),
    ("strategic-patch-bad-directive", "PATCH", VICTIM, "application/strategic-merge-patch+json", '{"$patch":"bogus"}', 422, None),
    ("strategic-patch-bad-order", "PATCH", VICTIM, "application/strategic-merge-patch+json", '{"$setElementOrder/data":5}', 422, None),
    ("apply-not-yaml", "PATCH", VICTIM + "?fieldManager=m", "application/apply-patch+yaml", "a: [\n", 400, None),
    ("apply-list", "PATCH", VICTIM + "?fieldManager=m", "application/apply-patch+yaml", "- a\n- b\n", 400, None),
    ("apply-wrong-kind", "PATCH", VICTIM + "?fieldManager=m", "application/apply-patch+yaml", "apiVersion: v1\nkind: Secret\nmetadata: {name: victim}\n", 400, None),
    ("apply-no-field-manager", "PATCH", VICTIM, "application/apply-patch+yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: victim}\ndata: {k: x}\n", 400, None),
    ("apply-force-non-apply", "PATCH", VICTIM + "?force=true", "application/merge-patch+json", '{"data":{"k":"x"}}', 400, None),
    ("patch-plain-json", "PATCH", VICTIM, "application/json", '{"data":{"k":"x"}}', 415, None),
    ("patch-missing-object", "PATCH", f"{CMS}/nope", "application/merge-patch+json", "{}", 404, f"{CMS}/nope"),
    ("delete-options-garbage", "DELETE", VICTIM, "application/json", "{garbage", 400, None),
    ("delete-options-bad-policy", "DELETE", VICTIM, "application/json", '{"propagationPolicy":"Sideways"}', 422, None),
    ("delete-bad-precondition", "DELETE", VICTIM, "application/json", '{"preconditions":{"uid":"not-the-uid"}}', 409, None),
]


@pytest.mark.parametrize("case", BODIES, ids=[c[0] for c in BODIES])
def test_malformed_body(kaji, victim, case):
    name, method, path, ctype, body, codes, must_be_absent = case
    expect(request(kaji, method, path, body, ctype), codes, name)
    if must_be_absent:
        absent(kaji, must_be_absent)
    victim_unchanged(kaji, victim)


def test_duplicate_keys_warn_keeps_the_last_and_warns(kaji):
    got = request(kaji, "POST", CMS, '{"metadata":{"name":"dupw"},"data":{"k":"first","k":"last"}}')
    assert got is not None and got.code == 201, got
    assert json.loads(got.body)["data"] == {"k": "last"}
    assert any("duplicate field" in w for w in got.headers.get("warning", [])), got.headers
    request(kaji, "DELETE", f"{CMS}/dupw", content_type=None)


# (id, method, path, expected code(s)) with no body.
QUERIES = [
    ("limit-abc", "GET", f"{CMS}?limit=abc", 400),
    ("limit-float", "GET", f"{CMS}?limit=1e3", 400),
    ("limit-overflow", "GET", f"{CMS}?limit=99999999999999999999", 400),
    ("resource-version-garbage", "GET", f"{CMS}?resourceVersion=xyz", 400),
    ("resource-version-match-garbage", "GET", f"{CMS}?resourceVersion=0&resourceVersionMatch=Sideways", 400),
    ("continue-garbage", "GET", f"{CMS}?continue=%00%ff", 400),
    ("timeout-seconds-huge-float", "GET", f"{CMS}?timeoutSeconds=1e99", 400),
    ("timeout-seconds-text", "GET", f"{CMS}?timeoutSeconds=soon", 400),
    ("watch-timeout-seconds-huge-float", "GET", f"{CMS}?watch=true&timeoutSeconds=1e99", 400),
    ("watch-bad-label-selector", "GET", f"{CMS}?watch=true&timeoutSeconds=1&labelSelector=a%20in%20(", 400),
    ("label-selector-unclosed", "GET", f"{CMS}?labelSelector=a%20in%20(", 400),
    ("label-selector-bangs", "GET", f"{CMS}?labelSelector=!!a", 400),
    ("label-selector-bad-value", "GET", f"{CMS}?labelSelector=a%3D%3D%3Db", 400),
    ("label-selector-empty-key", "GET", f"{CMS}?labelSelector=%3Dx", 400),
    ("field-selector-no-operator", "GET", f"{CMS}?fieldSelector=foo", 400),
    ("field-selector-unsupported-field", "GET", f"{CMS}?fieldSelector=spec.bogus%3Dx", 400),
    ("field-validation-unknown", "POST", f"{CMS}?fieldValidation=Loose", 400),
    ("dry-run-unknown", "POST", f"{CMS}?dryRun=Maybe", 400),
    ("force-not-bool", "PATCH", f"{VICTIM}?force=maybe", 400),
    ("field-manager-too-long", "PATCH", f"{VICTIM}?fieldManager={'m' * 200}", 422),
    ("grace-period-text", "DELETE", f"{VICTIM}?gracePeriodSeconds=soon", 400),
    ("propagation-policy-unknown", "DELETE", f"{VICTIM}?propagationPolicy=Sideways", 422),
    ("invalid-escape-in-query-value", "GET", f"{CMS}?limit=%zz", 400),
    # Paths.
    ("invalid-escape-in-name", "GET", f"{CMS}/%zz", 400),
    ("truncated-escape-in-name", "GET", f"{CMS}/abc%4", 400),
    ("invalid-escape-in-namespace", "GET", "/api/v1/namespaces/%g0/configmaps", 400),
    ("invalid-escape-in-resource", "GET", f"/api/v1/namespaces/{NS}/config%zzmaps", 400),
    ("escaped-non-utf8-name", "GET", f"{CMS}/%C3", 404),
    ("name-dotdot", "GET", f"{CMS}/..", 400),
    ("name-dot", "GET", f"{CMS}/.", 400),
    ("name-escaped-slash", "GET", f"{CMS}/a%2Fb", 400),
    ("name-escaped-percent", "GET", f"{CMS}/a%25b", 400),
    ("delete-name-dotdot", "DELETE", f"{CMS}/..", 400),
    ("namespace-dotdot", "GET", "/api/v1/namespaces/../configmaps", 400),
    ("dotdot-into-other-namespace", "GET", f"{CMS}/../../kube-system/configmaps", 404),
    ("empty-namespace-segment", "GET", "/api/v1/namespaces//configmaps", 404),
    ("empty-name-segment-then-sub", "GET", f"{CMS}//status", 404),
    ("double-slash-prefix", "GET", "//api/v1/namespaces", 404),
    ("unknown-resource", "GET", f"/api/v1/namespaces/{NS}/nosuchthings", 404),
    ("unknown-subresource", "GET", f"{VICTIM}/nosuch", 404),
    ("too-many-segments", "GET", f"{VICTIM}/status/extra/segments", 404),
    ("unknown-group", "GET", "/apis/nosuch.example.com/v1/things", 404),
    ("unknown-version", "GET", "/api/v9/namespaces", 404),
    ("namespaced-path-for-cluster-resource", "GET", f"/api/v1/namespaces/{NS}/nodes", 404),
    # Methods.
    ("post-on-item", "POST", VICTIM, 405),
    ("patch-on-collection", "PATCH", CMS, 405),
    ("put-on-collection", "PUT", CMS, 405),
    ("unknown-method", "FROB", VICTIM, 405),
    ("trace", "TRACE", VICTIM, 405),
    ("post-on-discovery", "POST", "/api/v1", 405),
    ("delete-on-openapi", "DELETE", "/openapi/v2", 405),
    ("put-on-version", "PUT", "/version", 405),
    ("post-on-readyz", "POST", "/readyz", 405),
    ("post-on-list-all-namespaces", "POST", "/api/v1/configmaps", 405),
    # Streaming subresources without the upgrade they need, on no pod:
    # kube-apiserver looks the pod up first (404); kaji checks the upgrade
    # first (400 "Upgrade request required").
    ("exec-no-pod", "POST", f"/api/v1/namespaces/{NS}/pods/nopod/exec?command=true&stdout=true", (400, 404)),
    ("attach-no-pod", "POST", f"/api/v1/namespaces/{NS}/pods/nopod/attach?stdout=true", (400, 404)),
    ("portforward-no-pod", "POST", f"/api/v1/namespaces/{NS}/pods/nopod/portforward?ports=80", (400, 404)),
    ("exec-bad-escape", "POST", f"/api/v1/namespaces/{NS}/pods/no%zzpod/exec?command=true", 400),
    ("log-no-pod", "GET", f"/api/v1/namespaces/{NS}/pods/nopod/log", 404),
    ("log-follow-no-pod", "GET", f"/api/v1/namespaces/{NS}/pods/nopod/log?follow=true", 404),
    ("log-bad-tail-lines", "GET", f"/api/v1/namespaces/{NS}/pods/nopod/log?tailLines=many", (400, 404)),
    ("proxy-no-pod", "GET", f"/api/v1/namespaces/{NS}/pods/nopod/proxy/", 404),
]


@pytest.mark.parametrize("case", QUERIES, ids=[c[0] for c in QUERIES])
def test_malformed_query_path_or_method(kaji, victim, case):
    name, method, path, codes = case
    body = b"{}" if method in ("POST", "PUT", "PATCH") else b""
    ctype = "application/merge-patch+json" if method == "PATCH" else "application/json"
    expect(request(kaji, method, path, body, ctype), codes, name)
    victim_unchanged(kaji, victim)


def test_limit_minus_one_lists_everything(kaji):
    # kube-apiserver treats a non-positive limit as no limit.
    got = request(kaji, "GET", f"{CMS}?limit=-1", content_type=None)
    assert got is not None and got.code == 200, got
    assert json.loads(got.body)["kind"] == "ConfigMapList"


def test_unauthenticated_requests_are_401(kaji):
    expect(request(kaji, "GET", CMS, content_type=None, with_cert=False), 401, "no client certificate")
    expect(
        request(kaji, "GET", CMS, content_type=None, with_cert=False, headers=["Authorization: Bearer not-a-token"]),
        401,
        "bad bearer token",
    )


def _head(method, path, extra):
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"] + extra
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def test_body_over_the_limit_chunked_is_413(kaji):
    body = cm("bigchunked", data={"k": "x" * (LIMIT + 1024)}).encode()
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(body[i : i + 65536]), body[i : i + 65536]) for i in range(0, len(body), 65536))
    raw = _head("POST", CMS, ["Content-Type: application/json", "Transfer-Encoding: chunked"]) + chunks + b"0\r\n\r\n"
    expect(send_raw(kaji, raw), 413, "chunked body over the limit")
    absent(kaji, f"{CMS}/bigchunked")


def test_declared_length_over_the_limit_is_413_without_waiting(kaji):
    # The client declares 1 GiB and sends two bytes: the answer must not wait for the rest.
    started = time.monotonic()
    raw = _head("POST", CMS, ["Content-Type: application/json", f"Content-Length: {1 << 30}"]) + b"{}"
    expect(send_raw(kaji, raw, timeout=15), 413, "declared Content-Length over the limit")
    assert time.monotonic() - started < 10


def test_declared_length_longer_than_body(kaji):
    # The body stops short and the client waits: the server must not answer
    # with a half-read body as if it were complete; it may wait for the rest
    # (the client's deadline ends it) or answer 400. Either way nothing is written.
    raw = _head("POST", CMS, ["Content-Type: application/json", "Content-Length: 200"]) + cm("short").encode()
    got = send_raw(kaji, raw, timeout=3)
    if got is not None:
        expect(got, 400, "Content-Length longer than the body")
    absent(kaji, f"{CMS}/short")


def test_declared_length_shorter_than_body(kaji):
    # Only the declared bytes are the body (a truncated JSON object: 400); the
    # rest is a broken next request that the HTTP codec refuses on its own.
    body = cm("longer").encode()
    raw = _head("POST", CMS, ["Content-Type: application/json", f"Content-Length: {len(body) // 2}"]) + body
    expect(send_raw(kaji, raw), 400, "Content-Length shorter than the body")
    absent(kaji, f"{CMS}/longer")


@pytest.mark.parametrize(
    "chunks",
    [b"zz\r\n{}\r\n0\r\n\r\n", b"ffffffffffffffffffff\r\n{}\r\n0\r\n\r\n", b"2\r\n{}XX0\r\n\r\n", b"-2\r\n{}\r\n0\r\n\r\n"],
    ids=["non-hex-size", "size-overflow", "missing-crlf", "negative-size"],
)
def test_bad_chunked_encoding_is_400(kaji, chunks):
    raw = _head("POST", CMS, ["Content-Type: application/json", "Transfer-Encoding: chunked"]) + chunks
    got = send_raw(kaji, raw)
    # The HTTP codec may refuse the framing itself (bare 400, as Go does) or
    # hand the handler a body error (Status 400); both close the exchange.
    assert got is None or got.code == 400, got
    if got is not None and got.body:
        assert_status_body(got.code, got.body, "bad chunked encoding")


def test_content_length_and_chunked_together(kaji):
    body = b'{"metadata":{"name":"smuggle"}}'
    raw = _head("POST", CMS, ["Content-Type: application/json", "Transfer-Encoding: chunked", "Content-Length: 3"])
    raw += b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    got = send_raw(kaji, raw)
    # RFC 9112: chunked wins (201) or the request is refused (400); never a
    # body cut at the Content-Length.
    assert got is not None and got.code in (201, 400), got
    request(kaji, "DELETE", f"{CMS}/smuggle", content_type=None)


@pytest.mark.parametrize(
    "raw",
    [
        _head("GET", CMS, [f"X-Flood-{i}: {i}" for i in range(10000)]),
        _head("GET", CMS, ["X-Huge: " + "a" * (1 << 20)]),
        b"GARBAGE\r\n\r\n",
        b"GET " + CMS.encode() + b" HTTP/9.9\r\nHost: x\r\n\r\n",
        b"GET /api/v1/namespaces/\x01\x7f HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET " + CMS.encode() + b" HTTP/1.1\r\nBad Header Name: x\r\n\r\n",
        b"\r\n" * 1000 + b"\x16\x03\x01",
    ],
    ids=["header-flood", "huge-header", "garbage-request-line", "bad-http-version", "control-chars-in-target", "space-in-header-name", "junk"],
)
def test_framing_errors_get_a_4xx_or_a_close(kaji, raw):
    got = send_raw(kaji, raw)
    assert got is None or 400 <= got.code < 500, got


def test_zz_nothing_half_written_and_server_healthy(kaji, victim, session):
    victim_unchanged(kaji, victim)
    got = request(kaji, "GET", CMS, content_type=None)
    names = sorted(i["metadata"]["name"] for i in json.loads(got.body)["items"])
    assert names == ["victim"], f"left behind by rejected writes: {names}"
    assert_healthy(session, kaji[0])
