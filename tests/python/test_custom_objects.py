"""Custom resources through the official Python client's CustomObjectsApi
and ApiextensionsV1Api, against a running kaji (KUBECONFIG)."""

import threading
import time

import pytest
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

GROUP, VERSION, PLURAL = "py.example.com", "v1", "gadgets"

CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": f"{PLURAL}.{GROUP}"},
    "spec": {
        "group": GROUP,
        "scope": "Namespaced",
        "names": {"plural": PLURAL, "singular": "gadget", "kind": "Gadget"},
        "versions": [{
            "name": VERSION,
            "served": True,
            "storage": True,
            "subresources": {"status": {}},
            "schema": {"openAPIV3Schema": {
                "type": "object",
                "properties": {
                    "spec": {"type": "object", "required": ["size"], "properties": {
                        "size": {"type": "integer", "minimum": 1},
                        "color": {"type": "string", "enum": ["red", "blue"], "default": "red"},
                    }},
                    "status": {"type": "object", "properties": {"ready": {"type": "boolean"}}},
                },
            }},
        }],
    },
}


@pytest.fixture(scope="module")
def api():
    config.load_kube_config()
    api = client.ApiClient()
    ext = client.ApiextensionsV1Api(api)
    ext.create_custom_resource_definition(CRD)
    deadline = time.time() + 30
    while time.time() < deadline:
        crd = ext.read_custom_resource_definition(f"{PLURAL}.{GROUP}")
        conditions = {c.type: c.status for c in (crd.status.conditions or [])}
        if conditions.get("Established") == "True":
            break
        time.sleep(0.1)
    else:
        pytest.fail("the CRD never became Established")
    return api


def gadget(name, size):
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Gadget",
            "metadata": {"name": name}, "spec": {"size": size}}


def test_custom_objects_crud_with_defaults_and_status(api):
    co = client.CustomObjectsApi(api)
    created = co.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, gadget("g1", 2))
    assert created["spec"] == {"size": 2, "color": "red"}
    assert created["metadata"]["generation"] == 1
    patched = co.patch_namespaced_custom_object_status(
        GROUP, VERSION, "default", PLURAL, "g1", {"status": {"ready": True}})
    assert patched["status"] == {"ready": True}
    assert patched["metadata"]["generation"] == 1
    listed = co.list_namespaced_custom_object(GROUP, VERSION, "default", PLURAL)
    assert [i["metadata"]["name"] for i in listed["items"]] == ["g1"]
    co.delete_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "g1")
    with pytest.raises(ApiException) as e:
        co.get_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "g1")
    assert e.value.status == 404


def test_invalid_custom_object_is_422_naming_fields(api):
    co = client.CustomObjectsApi(api)
    bad = gadget("bad", 0)
    bad["spec"]["color"] = "green"
    with pytest.raises(ApiException) as e:
        co.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, bad)
    assert e.value.status == 422
    body = e.value.body
    assert "spec.size" in body and "spec.color" in body


def test_watch_streams_custom_object_events(api):
    co = client.CustomObjectsApi(api)
    seen = []
    w = watch.Watch()

    def follow():
        for ev in w.stream(co.list_namespaced_custom_object, GROUP, VERSION, "default", PLURAL,
                           timeout_seconds=20):
            seen.append((ev["type"], ev["object"]["metadata"]["name"]))
            if ev["type"] == "DELETED":
                w.stop()

    t = threading.Thread(target=follow)
    t.start()
    time.sleep(0.5)
    co.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, gadget("w1", 1))
    co.patch_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "w1", {"spec": {"size": 3}})
    co.delete_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "w1")
    t.join(25)
    assert seen == [("ADDED", "w1"), ("MODIFIED", "w1"), ("DELETED", "w1")]
