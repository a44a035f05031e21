"""The official Python client (`kubernetes` on PyPI) against a running kaji.

KUBECONFIG must point at the cluster; crates/kaji/tests/python_client.rs starts
one and runs this file with pytest.
"""

import threading

import pytest
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException


@pytest.fixture(scope="module")
def api():
    config.load_kube_config()
    return client.ApiClient()


def test_version_and_namespaces(api):
    version = client.VersionApi(api).get_code()
    assert (version.major, version.minor) == ("1", "32")
    names = {ns.metadata.name for ns in client.CoreV1Api(api).list_namespace().items}
    assert {"default", "kube-system", "kube-public", "kube-node-lease"} <= names


def test_configmap_crud_and_conflict(api):
    core = client.CoreV1Api(api)
    body = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="py-cm", labels={"via": "python"}), data={"a": "1"})
    created = core.create_namespaced_config_map("default", body)
    assert created.metadata.uid
    got = core.read_namespaced_config_map("py-cm", "default")
    assert got.data == {"a": "1"}
    got.data["a"] = "2"
    replaced = core.replace_namespaced_config_map("py-cm", "default", got)
    assert int(replaced.metadata.resource_version) > int(created.metadata.resource_version)
    stale = created
    stale.data = {"a": "3"}
    with pytest.raises(ApiException) as e:
        core.replace_namespaced_config_map("py-cm", "default", stale)
    assert e.value.status == 409
    patched = core.patch_namespaced_config_map("py-cm", "default", {"data": {"b": "x"}})
    assert patched.data == {"a": "2", "b": "x"}
    listed = core.list_namespaced_config_map("default", label_selector="via=python")
    assert [c.metadata.name for c in listed.items] == ["py-cm"]
    core.delete_namespaced_config_map("py-cm", "default")
    with pytest.raises(ApiException) as e:
        core.read_namespaced_config_map("py-cm", "default")
    assert e.value.status == 404


def test_deployment_defaults_and_scale(api):
    apps = client.AppsV1Api(api)
    dep = client.V1Deployment(
        metadata=client.V1ObjectMeta(name="py-web"),
        spec=client.V1DeploymentSpec(
            selector=client.V1LabelSelector(match_labels={"app": "py-web"}),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels={"app": "py-web"}),
                spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="busybox:1.36")]),
            ),
        ),
    )
    created = apps.create_namespaced_deployment("default", dep)
    assert created.spec.replicas == 1
    assert created.spec.strategy.type == "RollingUpdate"
    apps.patch_namespaced_deployment_scale("py-web", "default", {"spec": {"replicas": 4}})
    assert apps.read_namespaced_deployment_scale("py-web", "default").spec.replicas == 4
    with pytest.raises(ApiException) as e:
        apps.create_namespaced_deployment("default", dep)
    assert e.value.status == 409


def test_watch_sees_changes_in_order(api):
    core = client.CoreV1Api(api)
    start = core.list_namespaced_config_map("default").metadata.resource_version
    seen = []

    def run():
        w = watch.Watch()
        for ev in w.stream(core.list_namespaced_config_map, "default", resource_version=start, timeout_seconds=10):
            seen.append((ev["type"], ev["object"].metadata.name))
            if ev["type"] == "DELETED":
                w.stop()

    t = threading.Thread(target=run)
    t.start()
    core.create_namespaced_config_map("default", client.V1ConfigMap(metadata=client.V1ObjectMeta(name="py-w")))
    core.patch_namespaced_config_map("py-w", "default", {"data": {"k": "v"}})
    core.delete_namespaced_config_map("py-w", "default")
    t.join(timeout=15)
    assert seen == [("ADDED", "py-w"), ("MODIFIED", "py-w"), ("DELETED", "py-w")]


def test_invalid_object_is_422_with_causes(api):
    core = client.CoreV1Api(api)
    with pytest.raises(ApiException) as e:
        core.create_namespaced_config_map("default", client.V1ConfigMap(metadata=client.V1ObjectMeta(name="Not_Valid")))
    assert e.value.status == 422
    assert "metadata.name" in e.value.body
