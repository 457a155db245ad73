"""deploy/: the Kubernetes manifests, the RayCluster and the compose file pass real
validators offline, and every environment variable they set is one Darkroom reads.

- Kubernetes objects: `kubernetes-validate` (strict: an unknown field is an error) with
  the Kubernetes schemas it ships.
- The RayCluster: the openAPIV3Schema of KubeRay's published CRD (vendored, see
  schemas/PROVENANCE.md) with jsonschema, unknown fields refused as
  `kubectl --validate=strict` does; its pod templates and head Service, which the vendored
  copy elides, with kubernetes-validate as core/v1 types.
- The compose file: the Compose specification's JSON schema (vendored) with jsonschema.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from darkroom.settings import variables

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
SCHEMAS = Path(__file__).resolve().parent / "schemas"
KUBERNETES = "1.33.0"
ROLES = ("api", "hub", "projections", "dispatcher")


def manifests() -> list[tuple[str, dict[str, Any]]]:
    return [
        (path.name, doc)
        for path in sorted((DEPLOY / "k8s").glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    ]


def kubernetes_objects() -> list[tuple[str, dict[str, Any]]]:
    return [(name, doc) for name, doc in manifests() if doc["kind"] != "RayCluster"]


def ray_cluster() -> dict[str, Any]:
    [cluster] = [doc for _, doc in manifests() if doc["kind"] == "RayCluster"]
    return cluster


def compose() -> dict[str, Any]:
    return dict(yaml.safe_load((DEPLOY / "compose.yaml").read_text()))


def strict(schema: Any) -> Any:
    """The schema with unknown properties refused wherever it names the known ones."""
    if isinstance(schema, dict):
        schema = {key: strict(value) for key, value in schema.items()}
        if "properties" in schema and "additionalProperties" not in schema:
            schema["additionalProperties"] = False
    elif isinstance(schema, list):
        schema = [strict(item) for item in schema]
    return schema


def ray_cluster_errors(cluster: dict[str, Any]) -> list[str]:
    schema = strict(yaml.safe_load((SCHEMAS / "ray.io_rayclusters.v1.openapi.yaml").read_text()))
    validator = jsonschema.Draft7Validator(schema)
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator.iter_errors(cluster)
    ]


def compose_errors(document: dict[str, Any]) -> list[str]:
    schema = json.loads((SCHEMAS / "compose_spec.json").read_text())
    validator = jsonschema.Draft201909Validator(schema)
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator.iter_errors(document)
    ]


def as_pod_template(name: str, template: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "PodTemplate",
        "metadata": {"name": name},
        "template": template,
    }


@pytest.mark.parametrize(
    ("document", "manifest"),
    kubernetes_objects(),
    ids=[f"{n}:{d['kind']}" for n, d in kubernetes_objects()],
)
def test_every_kubernetes_manifest_passes_the_kubernetes_schemas(
    document: str, manifest: dict[str, Any]
) -> None:
    kubernetes_validate.validate(manifest, KUBERNETES, strict=True)


def test_the_kubernetes_validator_refuses_a_misspelt_field() -> None:
    [deployment] = [
        d for n, d in kubernetes_objects() if n == "api.yaml" and d["kind"] == "Deployment"
    ]
    broken = copy.deepcopy(deployment)
    broken["spec"]["replica"] = broken["spec"].pop("replicas")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES, strict=True)


def test_the_ray_cluster_passes_kuberays_published_crd_schema() -> None:
    assert ray_cluster_errors(ray_cluster()) == []


def test_the_ray_clusters_pod_templates_pass_the_kubernetes_schemas() -> None:
    spec = ray_cluster()["spec"]
    templates = [("head", spec["headGroupSpec"]["template"])]
    templates += [(group["groupName"], group["template"]) for group in spec["workerGroupSpecs"]]
    for name, template in templates:
        kubernetes_validate.validate(as_pod_template(name, template), KUBERNETES, strict=True)
    if "headService" in spec["headGroupSpec"]:
        kubernetes_validate.validate(spec["headGroupSpec"]["headService"], KUBERNETES, strict=True)


def test_the_crd_schema_refuses_an_unknown_field_and_a_missing_one() -> None:
    unknown = copy.deepcopy(ray_cluster())
    unknown["spec"]["workerGroupSpecs"][0]["gpus"] = 1
    missing = copy.deepcopy(ray_cluster())
    del missing["spec"]["workerGroupSpecs"][0]["groupName"]
    assert any("gpus" in e for e in ray_cluster_errors(unknown))
    assert any("groupName" in e for e in ray_cluster_errors(missing))


def test_the_ray_cluster_has_a_gpu_worker_group() -> None:
    groups = ray_cluster()["spec"]["workerGroupSpecs"]
    gpus = [
        container["resources"]["limits"].get("nvidia.com/gpu")
        for group in groups
        for container in group["template"]["spec"]["containers"]
    ]
    assert any(gpus), gpus


def test_each_role_has_a_deployment_a_service_a_budget_and_both_probes() -> None:
    kinds = {(d["kind"], d["metadata"]["name"]) for _, d in kubernetes_objects()}
    for role in ROLES:
        name = f"darkroom-{role}"
        assert {("Deployment", name), ("Service", name), ("PodDisruptionBudget", name)} <= kinds
    for _, doc in kubernetes_objects():
        if doc["kind"] == "Deployment" and doc["metadata"]["name"].startswith("darkroom-"):
            [container] = doc["spec"]["template"]["spec"]["containers"]
            assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"
            assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
            role = doc["metadata"]["name"].removeprefix("darkroom-")
            assert container["args"] == ["darkroom", "serve", "--role", role]


def test_the_api_and_the_hub_scale_horizontally() -> None:
    scaled = {
        d["spec"]["scaleTargetRef"]["name"]
        for _, d in kubernetes_objects()
        if d["kind"] == "HorizontalPodAutoscaler"
    }
    assert scaled == {"darkroom-api", "darkroom-hub"}


def test_the_secrets_hold_the_jwt_secret_the_service_key_and_the_database_url() -> None:
    [secret] = [d for _, d in kubernetes_objects() if d["kind"] == "Secret"]
    assert {"DARKROOM_JWT_SECRET", "DARKROOM_SERVICE_KEY", "DATABASE_URL"} <= set(
        secret["stringData"]
    )


def test_the_compose_file_passes_the_compose_specification_schema() -> None:
    assert compose_errors(compose()) == []


def test_the_compose_schema_refuses_a_misplaced_field() -> None:
    broken = compose()
    broken["services"]["api"]["replicas"] = 2  # belongs under deploy:
    assert any("replicas" in e for e in compose_errors(broken))


def test_the_compose_file_runs_every_part_with_health_checks() -> None:
    services = compose()["services"]
    assert services["postgres"]["image"] == "postgres:17"
    assert services["redis"]["image"] == "redis:7"
    [device] = services["ray-gpu-worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert device["capabilities"] == ["gpu"]
    replicas = {role: services[role].get("deploy", {}).get("replicas", 1) for role in ROLES}
    assert replicas == {"api": 2, "hub": 2, "projections": 2, "dispatcher": 1}
    assert [name for name, s in services.items() if "healthcheck" not in s] == []
    assert set(compose()["volumes"]) >= {"pgdata"}


def test_the_proxy_sends_websockets_to_the_hub_and_the_rest_to_the_api() -> None:
    conf = (DEPLOY / "nginx.conf").read_text()
    ws = conf[conf.index("location /ws") : conf.index("location / ")]
    assert "proxy_pass $hub" in ws and "Upgrade $http_upgrade" in ws
    assert "proxy_pass $api" in conf[conf.index("location / ") :]


# -- environment --------------------------------------------------------------------------
ENV_READ = re.compile(
    r"""(?:environ\.get|environ\[|getenv|env_(?:float|int|flag))\(?\s*"""
    r"""["']([A-Z][A-Z0-9_]+)["']"""
)


def names_darkroom_reads() -> set[str]:
    """Every variable the settings objects read, and the ones read by name in the code."""
    names = {variable.name for variable in variables()}
    for package in ("domain", "projections", "realtime", "inference", "darkroom"):
        for source in (ROOT / package).rglob("*.py"):
            names |= set(ENV_READ.findall(source.read_text()))
    return names


def names_deploy_sets() -> dict[str, set[str]]:
    """Variable names each Darkroom container is given, by where they are set."""
    found: dict[str, set[str]] = {}
    for name, doc in manifests():
        if doc["kind"] in ("ConfigMap", "Secret"):
            found.setdefault(f"{name}:{doc['kind']}", set()).update(
                doc.get("data") or {}, doc.get("stringData") or {}
            )
        pods = [doc["spec"]["template"]] if doc["kind"] == "Deployment" else []
        if doc["kind"] == "RayCluster":
            pods = [doc["spec"]["headGroupSpec"]["template"]]
            pods += [g["template"] for g in doc["spec"]["workerGroupSpecs"]]
        for pod in pods:
            for container in pod["spec"]["containers"]:
                if container["image"].startswith("darkroom:"):
                    found.setdefault(f"{name}:{container['name']}", set()).update(
                        e["name"] for e in container.get("env", [])
                    )
    for service, spec in compose()["services"].items():
        if str(spec.get("image", "")).startswith("darkroom:"):
            found[f"compose:{service}"] = set(spec.get("environment") or {})
    return found


def test_every_variable_the_deployments_set_is_one_darkroom_reads() -> None:
    read = names_darkroom_reads()
    unread = {
        where: sorted(names - read) for where, names in names_deploy_sets().items() if names - read
    }
    assert unread == {}


def test_the_variable_check_sees_the_settings_and_what_the_deployments_set() -> None:
    read = names_darkroom_reads()
    assert {
        "DATABASE_URL",
        "DARKROOM_ROLES",
        "DARKROOM_JWT_SECRET",
        "RAY_ADDRESS",
        "DARKROOM_INFERENCE",
        "DARKROOM_WS_POLL_S",
        "DARKROOM_SESSION_CONSISTENCY",
    } <= read
    assert "DARKROOM_NO_SUCH_KNOB" not in read
    sets = names_deploy_sets()
    assert "RAY_ADDRESS" in sets["compose:dispatcher"]
    assert "DATABASE_URL" in sets["dispatcher.yaml:darkroom"]


def test_every_variable_the_compose_file_interpolates_is_in_the_env_example() -> None:
    used = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", (DEPLOY / "compose.yaml").read_text()))
    example = {
        line.split("=", 1)[0]
        for line in (DEPLOY / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    }
    assert used - example == set()
    assert "POSTGRES_PASSWORD" in used
