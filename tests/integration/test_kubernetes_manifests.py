"""deploy/kubernetes/: every overlay builds with ``kubectl kustomize`` and its output validates
against the newest Kubernetes release kubernetes-validate ships schemas for (strict: no
unknown fields); and what matters for running it holds: non-root with the image's UID,
pinned images, resources and probes on every container, Secrets referenced and never
committed, the nginx ring hashing blobs by digest and retrying the next replica."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes_validate import utils as kubernetes_validate

from mirror.config.load import load_config
from mirror.tier.haproxy import HAProxyTier
from mirror.tier.haproxy import render as render_haproxy

pytestmark = pytest.mark.integration

KUBERNETES = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes"
OVERLAYS = sorted(p.name for p in (KUBERNETES / "overlays").iterdir() if p.is_dir())
MIRROR_UID = 10001
REPLICAS = 3
# Node-local pods need the "privileged" Pod Security level (hostNetwork, hostPath); the tier
# keeps "restricted" in its own namespace.
NAMESPACES = {
    "node-local": "mirror-node",
    "regional": "mirror",
    "regional-haproxy": "mirror",
    "regional-with-postgres": "mirror",
}
POD_SECURITY = {"mirror-node": "privileged", "mirror": "restricted"}
# The one container allowed to run as root: it writes the node's containerd hosts.toml files
# (a root-owned host directory) and hands the hostPath cache to the mirror's UID.
ROOT_INIT_CONTAINERS = {("mirror-node", "install-hosts-toml")}

Manifest = dict[str, Any]


def kustomize(overlay: str) -> list[Manifest]:
    if shutil.which("kubectl") is None:
        pytest.skip("needs kubectl (kubectl kustomize) on PATH (scripts/install-test-deps.sh)")
    done = subprocess.run(
        ["kubectl", "kustomize", str(KUBERNETES / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


@pytest.fixture(scope="module", params=OVERLAYS)
def built(request: pytest.FixtureRequest) -> tuple[str, list[Manifest]]:
    return request.param, kustomize(request.param)


def of_kind(manifests: list[Manifest], kind: str) -> list[Manifest]:
    return [m for m in manifests if m["kind"] == kind]


def named(manifests: list[Manifest], kind: str, name: str) -> Manifest:
    found = [m for m in of_kind(manifests, kind) if m["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def workloads(manifests: list[Manifest]) -> Iterator[tuple[str, Manifest]]:
    for m in manifests:
        if m["kind"] in ("Deployment", "StatefulSet", "DaemonSet"):
            yield m["metadata"]["name"], m["spec"]["template"]["spec"]


def containers(pod: Manifest) -> Iterator[tuple[Manifest, bool]]:
    for c in pod.get("initContainers", []):
        yield c, True
    for c in pod["containers"]:
        yield c, False


def run_as(pod: Manifest, container: Manifest, key: str) -> Any:
    own = container.get("securityContext", {})
    return own[key] if key in own else pod.get("securityContext", {}).get(key)


def test_every_overlay_is_tested() -> None:
    assert OVERLAYS == ["node-local", "regional", "regional-haproxy", "regional-with-postgres"]


def test_every_overlay_validates_against_the_newest_kubernetes_schemas(
    built: tuple[str, list[Manifest]],
) -> None:
    overlay, manifests = built
    version = kubernetes_validate.latest_version()
    assert tuple(int(part) for part in version.split(".")[:2]) >= (1, 31)
    for manifest in manifests:
        what = f"{overlay}: {manifest['kind']}/{manifest['metadata']['name']}"
        try:
            kubernetes_validate.validate(manifest, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{what} is not valid Kubernetes {version}: {exc.message}")
        # Everything but the Namespace itself lands in the overlay's namespace.
        if manifest["kind"] != "Namespace":
            assert manifest["metadata"].get("namespace") == NAMESPACES[overlay], what


def test_each_namespace_enforces_the_strictest_pod_security_its_pods_allow(
    built: tuple[str, list[Manifest]],
) -> None:
    overlay, manifests = built
    (namespace,) = of_kind(manifests, "Namespace")
    name = namespace["metadata"]["name"]
    assert name == NAMESPACES[overlay]
    assert (
        namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"]
        == (POD_SECURITY[name])
    )


def test_containers_run_as_non_root_with_the_images_uid(
    built: tuple[str, list[Manifest]],
) -> None:
    _, manifests = built
    checked = 0
    for name, pod in workloads(manifests):
        assert pod.get("automountServiceAccountToken") is False, name
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", name
        for container, _init in containers(pod):
            where = f"{name}/{container['name']}"
            own = container["securityContext"]
            assert own["allowPrivilegeEscalation"] is False, where
            assert own["readOnlyRootFilesystem"] is True, where
            assert own["capabilities"]["drop"] == ["ALL"], where
            if (name, container["name"]) in ROOT_INIT_CONTAINERS:
                assert own["capabilities"].get("add") == ["CHOWN"], where
                continue
            assert run_as(pod, container, "runAsNonRoot") is True, where
            uid = run_as(pod, container, "runAsUser")
            assert isinstance(uid, int) and uid > 0, where
            if container["image"].startswith("registry.example/mirror:"):
                assert uid == MIRROR_UID and run_as(pod, container, "runAsGroup") == MIRROR_UID
                checked += 1
    assert checked >= 1


def test_images_are_pinned_and_never_latest(built: tuple[str, list[Manifest]]) -> None:
    _, manifests = built
    for name, pod in workloads(manifests):
        for container, _init in containers(pod):
            image = container["image"]
            repository, _, tag = image.rpartition(":")
            assert repository and "/" not in tag, f"{name}: {image} has no tag"
            assert tag != "latest", f"{name}: {image}"
            assert re.fullmatch(r"\d+(\.\d+){1,2}(-[a-z0-9]+)?", tag), f"{name}: {image}"


def test_every_container_has_requests_and_limits(built: tuple[str, list[Manifest]]) -> None:
    _, manifests = built
    for name, pod in workloads(manifests):
        for container, _init in containers(pod):
            resources = container["resources"]
            for bound in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(resources[bound]), f"{name}: {bound}"


def test_every_long_running_container_has_liveness_and_readiness_probes(
    built: tuple[str, list[Manifest]],
) -> None:
    _, manifests = built
    for name, pod in workloads(manifests):
        for container, init in containers(pod):
            if not init:
                assert "livenessProbe" in container and "readinessProbe" in container, name


def test_secrets_are_referenced_never_committed(built: tuple[str, list[Manifest]]) -> None:
    _, manifests = built
    assert of_kind(manifests, "Secret") == []
    referenced = set()
    for _, pod in workloads(manifests):
        referenced |= {v["secret"]["secretName"] for v in pod.get("volumes", []) if "secret" in v}
        for container, _init in containers(pod):
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    referenced.add(ref["name"])
    assert "mirror-kek" in referenced


def test_the_node_local_daemonset_installs_hosts_toml_and_caches_on_the_node() -> None:
    manifests = kustomize("node-local")
    daemonset = named(manifests, "DaemonSet", "mirror-node")
    pod = daemonset["spec"]["template"]["spec"]
    assert pod["hostNetwork"] is True and pod["dnsPolicy"] == "ClusterFirstWithHostNet"
    assert {"operator": "Exists"} in pod["tolerations"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["cache"]["hostPath"]["path"] == "/var/lib/mirror"
    assert volumes["containerd-certs"]["hostPath"]["path"] == "/etc/containerd/certs.d"
    (init,) = pod["initContainers"]
    assert "/host/certs.d/$registry/hosts.toml" in init["command"][-1]
    hosts = named(manifests, "ConfigMap", pod["volumes"][1]["configMap"]["name"])["data"]
    assert set(hosts) == {"docker.io.toml", "ghcr.io.toml", "quay.io.toml", "registry.k8s.io.toml"}
    for registry, text in hosts.items():
        assert '[host."http://127.0.0.1:5016"]' in text, registry
        assert 'capabilities = ["pull", "resolve"]' in text, registry
    config = named(manifests, "ConfigMap", volumes["config"]["configMap"]["name"])
    assert 'listen = "127.0.0.1:5016"' in config["data"]["mirror.toml"]
    assert "forward_ns = true" in config["data"]["mirror.toml"]


def test_the_regional_statefulset_has_a_claim_per_replica_and_spreads_over_nodes() -> None:
    manifests = kustomize("regional")
    statefulset = named(manifests, "StatefulSet", "mirror")
    spec = statefulset["spec"]
    assert spec["replicas"] == REPLICAS
    (claim,) = spec["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "data"
    headless = named(manifests, "Service", spec["serviceName"])
    assert headless["spec"]["clusterIP"] == "None"
    pod = spec["template"]["spec"]
    anti = pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert anti[0]["topologyKey"] == "kubernetes.io/hostname"
    (mirror,) = pod["containers"]
    assert mirror["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert mirror["livenessProbe"]["httpGet"]["path"] == "/healthz"
    env = {e["name"]: e for e in mirror["env"]}
    assert env["MIRROR_METADATA_DSN"]["valueFrom"]["secretKeyRef"]["name"] == "mirror-postgres"
    budget = named(manifests, "PodDisruptionBudget", "mirror")
    assert budget["spec"]["maxUnavailable"] == 1
    assert budget["spec"]["selector"]["matchLabels"] == spec["selector"]["matchLabels"]
    config = named(manifests, "ConfigMap", pod["volumes"][0]["configMap"]["name"])
    assert 'backend = "postgres"' in config["data"]["mirror.toml"]


def test_nginx_hashes_on_the_digest_and_retries_the_next_statefulset_replica() -> None:
    manifests = kustomize("regional")
    deployment = named(manifests, "Deployment", "mirror-lb")
    pod = deployment["spec"]["template"]["spec"]
    config_map = named(manifests, "ConfigMap", pod["volumes"][0]["configMap"]["name"])
    conf = config_map["data"]["nginx.conf"]
    hashed = re.search(r"hash (\$\w+) consistent;", conf)
    assert hashed is not None
    key = hashed.group(1)
    mapping = re.search(r"map \$uri " + re.escape(key) + r" \{(.*?)\n\s*\}", conf, re.S)
    assert mapping is not None
    # Blobs by the digest in the path; manifests and tags by the repository.
    assert r"/blobs/(?<digest>sha256:[0-9a-f]{64})$" in mapping.group(1)
    assert "$digest;" in mapping.group(1)
    assert "manifests|tags" in mapping.group(1) and "$repo" in mapping.group(1)
    assert re.search(r"proxy_next_upstream error timeout http_502 http_503 http_504;", conf)
    servers = re.findall(r"^\s*server (\S+):5016", conf, re.M)
    statefulset = named(manifests, "StatefulSet", "mirror")
    headless = statefulset["spec"]["serviceName"]
    assert servers == [f"mirror-{i}.{headless}.mirror.svc.cluster.local" for i in range(REPLICAS)]
    replica_config = named(manifests, "ConfigMap", _config_name(statefulset))
    for server in servers:
        assert f'"http://{server}:5016"' in replica_config["data"]["mirror.toml"]


def test_the_haproxy_overlay_runs_the_generated_ring_and_the_replicas_compute_it() -> None:
    manifests = kustomize("regional-haproxy")
    deployment = named(manifests, "Deployment", "mirror-lb")
    pod = deployment["spec"]["template"]["spec"]
    assert [c["name"] for c in pod["containers"]] == ["haproxy"]
    config_map = named(manifests, "ConfigMap", pod["volumes"][0]["configMap"]["name"])
    statefulset = named(manifests, "StatefulSet", "mirror")
    headless = statefulset["spec"]["serviceName"]
    servers = [f"mirror-{i}.{headless}.mirror.svc.cluster.local:5016" for i in range(REPLICAS)]
    tier = HAProxyTier(servers, listen="0.0.0.0:8080", resolve=True)
    assert config_map["data"]["haproxy.cfg"] == render_haproxy(tier)
    (mirror,) = [c for c in statefulset["spec"]["template"]["spec"]["containers"]]
    env = {e["name"]: e.get("value") for e in mirror["env"]}
    assert env["MIRROR_TIER_BALANCER"] == "haproxy"
    replica_config = named(manifests, "ConfigMap", _config_name(statefulset))
    for server in servers:
        assert f'"http://{server}"' in replica_config["data"]["mirror.toml"]


def _config_name(statefulset: Manifest) -> str:
    volumes = statefulset["spec"]["template"]["spec"]["volumes"]
    return str(next(v for v in volumes if v["name"] == "config")["configMap"]["name"])


def test_postgres_is_external_unless_the_reference_overlay_runs_one() -> None:
    external = kustomize("regional")
    assert named(external, "Service", "postgres")["spec"]["type"] == "ExternalName"
    assert of_kind(external, "StatefulSet") == [named(external, "StatefulSet", "mirror")]
    trying = kustomize("regional-with-postgres")
    service = named(trying, "Service", "postgres")
    assert service["spec"]["type"] == "ClusterIP" and "externalName" not in service["spec"]
    postgres = named(trying, "StatefulSet", "postgres")
    labels = postgres["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()


def test_network_policies_deny_by_default_and_open_the_replica_port_to_nginx_and_peers(
    built: tuple[str, list[Manifest]],
) -> None:
    overlay, manifests = built
    deny = named(manifests, "NetworkPolicy", "default-deny")
    assert deny["spec"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    if overlay == "node-local":
        return
    regional = named(manifests, "NetworkPolicy", "mirror-regional")
    (ingress,) = regional["spec"]["ingress"]
    sources = [
        f["podSelector"]["matchLabels"]["app.kubernetes.io/component"] for f in ingress["from"]
    ]
    assert sorted(sources) == ["lb", "regional"]
    assert ingress["ports"] == [{"protocol": "TCP", "port": 5016}]


@pytest.mark.parametrize("overlay", ["node-local", "regional", "regional-haproxy"])
def test_the_shipped_mirror_toml_is_accepted_by_the_mirror_as_the_pods_run_it(
    overlay: str, tmp_path: Path
) -> None:
    manifests = kustomize(overlay)
    kinds = ("DaemonSet", "StatefulSet")
    (pod,) = [m["spec"]["template"]["spec"] for m in manifests if m["kind"] in kinds]
    (mirror,) = [c for c in pod["containers"] if c["name"] == "mirror"]
    config_volume = next(v for v in pod["volumes"] if v["name"] == "config")
    config = named(manifests, "ConfigMap", config_volume["configMap"]["name"])
    path = tmp_path / "mirror.toml"
    path.write_text(config["data"]["mirror.toml"])
    # The pod's environment, with the values Kubernetes would substitute.
    environ = {
        "MIRROR_TIER_SELF": "http://mirror-0.mirror-replicas.mirror.svc.cluster.local:5016",
        "MIRROR_METADATA_DSN": "postgresql://mirror@postgres.mirror.svc.cluster.local:5432/m",
        "PGPASSWORD": "secret",
    }
    names = {e["name"] for e in mirror.get("env", ())}
    literal = {
        e["name"]: e["value"] for e in mirror.get("env", ()) if "$(" not in e.get("value", "$(")
    }
    given = {k: v for k, v in environ.items() if k in names}
    loaded = load_config(path, environ=given | literal)
    if overlay == "regional-haproxy":
        assert loaded.tier.balancer == "haproxy"
    if overlay.startswith("regional"):
        assert loaded.metadata.backend == "postgres"
        assert loaded.tier.enabled and loaded.tier.self in loaded.tier.replicas
        mounts = {m["mountPath"] for m in mirror["volumeMounts"]}
        assert str(Path(loaded.tier.secret_file).parent) in mounts
        assert str(Path(loaded.auth.signing_key).parent) in mounts
