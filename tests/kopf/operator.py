"""A kopf operator for Greetings (tests/kopf/crd.yaml), run unchanged against kaji.

Each Greeting owns a ConfigMap `<name>-greeting` holding its text. Creating a
Greeting creates the ConfigMap (adopted: ownerReferences point at the
Greeting), changing `spec.message` or `spec.audience` rewrites it, and
deleting the Greeting (held back by kopf's finalizer until the delete handler
succeeds) leaves a marker ConfigMap `<name>-farewell` behind, so a test can see
the handler ran. Handler return values land in the Greeting's status, and
creation is announced with a Kubernetes Event (reason `Greeted`).

Run: KUBECONFIG=... python3 -m kopf run --standalone --namespace default operator.py
"""

import kopf
import kubernetes

GROUP, VERSION, PLURAL = "demo.kaji.dev", "v1", "greetings"


def core():
    return kubernetes.client.CoreV1Api()


def text(spec):
    return f"Hello, {spec.get('audience', 'world')}! {spec['message']}"


@kopf.on.startup()
def configure(**_):
    # The handlers' own client reads the same KUBECONFIG kopf logs in with.
    kubernetes.config.load_kube_config()


@kopf.on.create(GROUP, VERSION, PLURAL)
def create_fn(body, spec, name, namespace, logger, **_):
    cm = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": f"{name}-greeting"},
        "data": {"text": text(spec)},
    }
    kopf.adopt(cm)
    try:
        core().create_namespaced_config_map(namespace, cm)
    except kubernetes.client.ApiException as e:
        if e.status != 409:
            raise kopf.TemporaryError(f"creating ConfigMap: {e.reason}", delay=1)
        core().patch_namespaced_config_map(f"{name}-greeting", namespace, {"data": cm["data"]})
    logger.info("created ConfigMap %s-greeting", name)
    kopf.info(body, reason="Greeted", message=f"ConfigMap {name}-greeting holds the text")
    return {"configMap": f"{name}-greeting", "text": cm["data"]["text"]}


@kopf.on.field(GROUP, VERSION, PLURAL, field="spec.message")
@kopf.on.field(GROUP, VERSION, PLURAL, field="spec.audience", id="audience")
def text_fn(old, new, spec, name, namespace, logger, **_):
    try:
        core().patch_namespaced_config_map(
            f"{name}-greeting", namespace, {"data": {"text": text(spec)}}
        )
    except kubernetes.client.ApiException as e:
        raise kopf.TemporaryError(f"patching ConfigMap: {e.reason}", delay=1)
    logger.info("changed %r to %r", old, new)
    return {"text": text(spec)}


@kopf.on.update(GROUP, VERSION, PLURAL)
def update_fn(meta, patch, **_):
    patch.status["observedGeneration"] = meta["generation"]
    return {"generation": meta["generation"]}


@kopf.on.delete(GROUP, VERSION, PLURAL)
def delete_fn(name, namespace, logger, **_):
    marker = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": f"{name}-farewell"},
        "data": {"deleted": name},
    }
    try:
        core().create_namespaced_config_map(namespace, marker)
    except kubernetes.client.ApiException as e:
        if e.status != 409:
            raise kopf.TemporaryError(f"creating marker: {e.reason}", delay=1)
    logger.info("said farewell to %s", name)
