"""Validates the rendered Kubernetes manifests (kustomize build output on stdin).

- Core objects against the Kubernetes OpenAPI schemas (kubernetes-validate,
  strict: unknown fields are errors).
- The custom resources (KEDA ScaledObject and TriggerAuthentication,
  Prometheus Operator ServiceMonitor), which kubernetes-validate has no
  schema for, against the subset of their CRD schemas that we use.
- What newsflow itself needs: probes on /healthz and /readyz, requests and
  limits, non-root with a read-only root filesystem, a termination grace
  period longer than the worker's drain, KEDA never scaling past the
  partition count, and every referenced object present.

Exit status 1 with one line per problem.
"""

import re
import sys
import tomllib
from pathlib import Path

import jsonschema
import kubernetes_validate
import yaml

KUBERNETES_VERSION = "1.30.0"
# Secrets the operator creates by hand (see the example overlay).
EXTERNAL_SECRETS = {"newsflow-kafka", "newsflow-ingest"}

_STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
_META = {"type": "object", "required": ["name"]}
CUSTOM_SCHEMAS = {
    ("keda.sh/v1alpha1", "ScaledObject"): {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "metadata": _META,
            "spec": {
                "type": "object",
                "required": ["scaleTargetRef", "triggers"],
                "additionalProperties": False,
                "properties": {
                    "scaleTargetRef": {
                        "type": "object",
                        "required": ["name"],
                        "additionalProperties": False,
                        "properties": {
                            "name": {"type": "string"},
                            "kind": {"type": "string"},
                            "apiVersion": {"type": "string"},
                        },
                    },
                    "minReplicaCount": {"type": "integer", "minimum": 0},
                    "maxReplicaCount": {"type": "integer", "minimum": 1},
                    "pollingInterval": {"type": "integer", "minimum": 1},
                    "cooldownPeriod": {"type": "integer", "minimum": 0},
                    "triggers": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "required": ["type", "metadata"],
                            "additionalProperties": False,
                            "properties": {
                                "type": {"type": "string"},
                                "metadata": _STRING_MAP,
                                "authenticationRef": {
                                    "type": "object",
                                    "required": ["name"],
                                    "properties": {"name": {"type": "string"}},
                                },
                            },
                        },
                    },
                },
            },
        },
    },
    ("keda.sh/v1alpha1", "TriggerAuthentication"): {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "metadata": _META,
            "spec": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "secretTargetRef": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["parameter", "name", "key"],
                            "additionalProperties": False,
                            "properties": {
                                "parameter": {"type": "string"},
                                "name": {"type": "string"},
                                "key": {"type": "string"},
                            },
                        },
                    }
                },
            },
        },
    },
    ("monitoring.coreos.com/v1", "ServiceMonitor"): {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "metadata": _META,
            "spec": {
                "type": "object",
                "required": ["selector", "endpoints"],
                "additionalProperties": False,
                "properties": {
                    "selector": {
                        "type": "object",
                        "properties": {"matchLabels": _STRING_MAP},
                    },
                    "endpoints": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "required": ["port"],
                            "additionalProperties": False,
                            "properties": {
                                "port": {"type": "string"},
                                "path": {"type": "string"},
                                "interval": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"},
                            },
                        },
                    },
                },
            },
        },
    },
}


# The allocator settings the image ships (its Dockerfile's `ENV MIMALLOC_*`
# lines): `make bench` measures the worker with them, so a Deployment that
# set others would run a worker nobody measured.
IMAGE_ALLOCATOR = dict(
    re.findall(
        r"^ENV (MIMALLOC_\w+)=(\S+)$",
        (Path(__file__).resolve().parents[1] / "docker" / "Dockerfile").read_text(),
        re.MULTILINE,
    )
)


def seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    for suffix in ("ms", "s", "m", "h"):
        if duration.endswith(suffix):
            return float(duration[: -len(suffix)]) * units[suffix]
    raise ValueError(f"not a duration: {duration}")


def unrendered_volumes(where: str, pod: dict, config_maps, secrets, claims) -> list[str]:
    """The pod's volumes whose ConfigMap, Secret or claim is not rendered."""
    problems = []
    for volume in pod.get("volumes", []):
        if "configMap" in volume and volume["configMap"]["name"] not in config_maps:
            problems.append(f"{where}: ConfigMap {volume['configMap']['name']} is not rendered")
        if "secret" in volume and volume["secret"]["secretName"] not in secrets:
            problems.append(f"{where}: Secret {volume['secret']['secretName']} is unknown")
        if "persistentVolumeClaim" in volume and volume["persistentVolumeClaim"]["claimName"] not in claims:
            problems.append(f"{where}: PVC {volume['persistentVolumeClaim']['claimName']} is not rendered")
    return problems


def check(objects: list[dict]) -> list[str]:
    problems = []
    by_kind: dict[str, dict[str, dict]] = {}
    for obj in objects:
        name = f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
        by_kind.setdefault(obj["kind"], {})[obj["metadata"]["name"]] = obj
        key = (obj["apiVersion"], obj["kind"])
        if key in CUSTOM_SCHEMAS:
            for error in jsonschema.Draft7Validator(CUSTOM_SCHEMAS[key]).iter_errors(obj):
                problems.append(f"{name}: {error.json_path}: {error.message}")
            continue
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            problems.append(f"{name}: {error.message} at {'.'.join(map(str, error.path))}")
        except kubernetes_validate.SchemaNotFoundError as error:
            problems.append(f"{name}: no schema: {error}")

    config_maps = by_kind.get("ConfigMap", {})
    settings = {}
    for cm in config_maps.values():
        if "newsflow.toml" in cm.get("data", {}):
            settings = tomllib.loads(cm["data"]["newsflow.toml"])
    if not settings:
        problems.append("no ConfigMap carries newsflow.toml")
    drain = seconds(settings.get("shutdown", {}).get("grace_period", "30s"))
    partitions = settings.get("kafka", {}).get("partitions", 6)

    secrets = set(by_kind.get("Secret", {})) | EXTERNAL_SECRETS
    claims = set(by_kind.get("PersistentVolumeClaim", {}))
    for name, deployment in by_kind.get("Deployment", {}).items():
        pod = deployment["spec"]["template"]["spec"]
        where = f"Deployment/{name}"
        grace = pod.get("terminationGracePeriodSeconds", 30)
        for container in pod["containers"]:
            for var in container.get("env", []):
                image = IMAGE_ALLOCATOR.get(var["name"])
                if var["name"].startswith("MIMALLOC_") and var.get("value") != image:
                    problems.append(f"{where}: {var['name']}={var.get('value')} is not the image's {image} (deploy/docker/Dockerfile, what make bench measures)")
        component = deployment["metadata"].get("labels", {}).get("app.kubernetes.io/component")
        # The footer API holds no Kafka work to drain.
        if component != "footer" and grace <= drain:
            problems.append(f"{where}: terminationGracePeriodSeconds {grace} is not longer than shutdown.grace_period {drain:g}s")
        # An HTTP server on SIGTERM: readiness red, answer for shutdown_delay,
        # then drain requests for up to request_timeout.
        section, timeout = {"producer": ("ingest", "30s"), "footer": ("footer", "10s")}.get(component, (None, None))
        if section and any("serve" in c.get("args", []) for c in pod["containers"]):
            server = settings.get(section, {})
            http_drain = seconds(server.get("shutdown_delay", "5s")) + seconds(server.get("request_timeout", timeout))
            if grace <= http_drain:
                problems.append(
                    f"{where}: terminationGracePeriodSeconds {grace} is not longer than "
                    f"{section}.shutdown_delay + {section}.request_timeout ({http_drain:g}s)"
                )
        if not pod.get("securityContext", {}).get("runAsNonRoot"):
            problems.append(f"{where}: pod does not set runAsNonRoot")
        problems += unrendered_volumes(where, pod, config_maps, secrets, claims)
        for container in pod["containers"]:
            cwhere = f"{where} container {container['name']}"
            if container.get("readinessProbe", {}).get("httpGet", {}).get("path") != "/readyz":
                problems.append(f"{cwhere}: readiness probe is not /readyz")
            if container.get("livenessProbe", {}).get("httpGet", {}).get("path") != "/healthz":
                problems.append(f"{cwhere}: liveness probe is not /healthz")
            resources = container.get("resources", {})
            for kind in ("requests", "limits"):
                if not {"cpu", "memory"} <= set(resources.get(kind, {})):
                    problems.append(f"{cwhere}: {kind} must set cpu and memory")
            security = container.get("securityContext", {})
            if not security.get("readOnlyRootFilesystem"):
                problems.append(f"{cwhere}: root filesystem is writable")
            if security.get("allowPrivilegeEscalation", True):
                problems.append(f"{cwhere}: privilege escalation allowed")

    # The lake: a local output.uri must be a mounted volume in every
    # consumer; an object-store one needs no volume, and the pods' service
    # account, if named, must be rendered.
    uri = settings.get("output", {}).get("uri", "./var/lake")
    local = "://" not in uri or uri.startswith("file://")
    lake_path = uri.removeprefix("file://")
    accounts = set(by_kind.get("ServiceAccount", {}))
    for name, deployment in by_kind.get("Deployment", {}).items():
        pod = deployment["spec"]["template"]["spec"]
        account = pod.get("serviceAccountName")
        if account and account not in accounts:
            problems.append(f"Deployment/{name}: ServiceAccount {account} is not rendered")
        for source in (s for c in pod["containers"] for s in c.get("envFrom", [])):
            secret = source.get("secretRef", {})
            if secret and secret["name"] not in secrets and not secret.get("optional"):
                problems.append(f"Deployment/{name}: Secret {secret['name']} is unknown")
        # The workers write the lake and the footer API reads it.
        if deployment["metadata"].get("labels", {}).get("app.kubernetes.io/component") not in ("consumer", "footer"):
            continue
        mounts = [m["mountPath"] for c in pod["containers"] for m in c.get("volumeMounts", [])]
        if local and not any(lake_path.startswith(m) for m in mounts):
            problems.append(f"Deployment/{name}: output.uri {uri} is local but no volume is mounted there")

    # The lake's upkeep: a pod like the workers', on the same lake.
    for name, job in by_kind.get("CronJob", {}).items():
        where = f"CronJob/{name}"
        if job["spec"].get("concurrencyPolicy") != "Forbid":
            problems.append(f"{where}: concurrencyPolicy must be Forbid (one upkeep run at a time)")
        pod = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        if not pod.get("securityContext", {}).get("runAsNonRoot"):
            problems.append(f"{where}: pod does not set runAsNonRoot")
        account = pod.get("serviceAccountName")
        if account and account not in accounts:
            problems.append(f"{where}: ServiceAccount {account} is not rendered")
        problems += unrendered_volumes(where, pod, config_maps, secrets, claims)
        for container in pod["containers"]:
            resources = container.get("resources", {})
            for kind in ("requests", "limits"):
                if not {"cpu", "memory"} <= set(resources.get(kind, {})):
                    problems.append(f"{where} container {container['name']}: {kind} must set cpu and memory")
        mounts = [m["mountPath"] for c in pod["containers"] for m in c.get("volumeMounts", [])]
        if local and not any(lake_path.startswith(m) for m in mounts):
            problems.append(f"{where}: output.uri {uri} is local but no volume is mounted there")

    # Every binary validates the whole configuration at start-up, reading
    # the Kafka credential files it names: each pod that loads it must
    # mount them (ingest.auth_token_file is read by `serve` alone).
    kafka = settings.get("kafka", {})
    loaded_files = [
        path
        for path in (
            kafka.get("sasl", {}).get("password_file"),
            *(kafka.get("tls", {}).get(k) for k in ("ca_file", "cert_file", "key_file", "key_password_file")),
        )
        if path
    ]
    pods = [(f"Deployment/{n}", d["spec"]["template"]["spec"]) for n, d in by_kind.get("Deployment", {}).items()]
    pods += [(f"CronJob/{n}", j["spec"]["jobTemplate"]["spec"]["template"]["spec"]) for n, j in by_kind.get("CronJob", {}).items()]
    for where, pod in pods:
        for container in pod["containers"]:
            if "--config" not in container.get("args", []):
                continue
            mounts = [m["mountPath"] for m in container.get("volumeMounts", [])]
            for path in loaded_files:
                if not any(path.startswith(m.rstrip("/") + "/") for m in mounts):
                    problems.append(f"{where} container {container['name']}: {path} (named by the configuration) is not mounted")

    deployments = by_kind.get("Deployment", {})
    for name, scaled in by_kind.get("ScaledObject", {}).items():
        target = scaled["spec"]["scaleTargetRef"]["name"]
        if target not in deployments:
            problems.append(f"ScaledObject/{name}: target {target} is not rendered")
        workers = deployments.get(target, {}).get("metadata", {}).get("labels", {}).get("app.kubernetes.io/component") == "consumer"
        if workers and scaled["spec"].get("maxReplicaCount", 100) > partitions:
            problems.append(f"ScaledObject/{name}: maxReplicaCount exceeds kafka.partitions ({partitions})")
        for trigger in scaled["spec"]["triggers"]:
            auth = trigger.get("authenticationRef", {}).get("name")
            if auth and auth not in by_kind.get("TriggerAuthentication", {}):
                problems.append(f"ScaledObject/{name}: TriggerAuthentication {auth} is not rendered")
    pod_labels = [d["spec"]["template"]["metadata"]["labels"] for d in deployments.values()]
    for name, service in by_kind.get("Service", {}).items():
        selector = service["spec"].get("selector", {})
        if not any(selector.items() <= labels.items() for labels in pod_labels):
            problems.append(f"Service/{name}: selector {selector} matches no Deployment's pods")
    for name, monitor in by_kind.get("ServiceMonitor", {}).items():
        wanted = monitor["spec"]["selector"].get("matchLabels", {})
        services = [s for s in by_kind.get("Service", {}).values() if wanted.items() <= s["metadata"].get("labels", {}).items()]
        ports = {p.get("name") for s in services for p in s["spec"]["ports"]}
        for endpoint in monitor["spec"]["endpoints"]:
            if endpoint["port"] not in ports:
                problems.append(f"ServiceMonitor/{name}: no selected Service has a port named {endpoint['port']}")
    return problems


def main() -> int:
    objects = [doc for doc in yaml.safe_load_all(sys.stdin) if doc]
    problems = check(objects)
    for problem in problems:
        print(problem)
    print(f"k8s: {len(objects)} objects, {len(problems)} problems", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
