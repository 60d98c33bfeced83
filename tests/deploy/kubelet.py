"""The environment a kubelet gives srs's container, built from the manifests' documents.

Kubernetes' rules (documentation: "Define Environment Variables for a Container",
"Service" > "Environment variables"; the kubelet's pkg/kubelet/envvars): the service-link
variables of every Service with a cluster IP come first, then the container's ``env``
entries, which win.  Headless Services (``clusterIP: None``) give none.  Values the cluster
supplies (a pod's IP, a node's name, a Secret) are stand-ins named here.
"""

from __future__ import annotations

from typing import Any

__all__ = ["POD_IP", "SECRET_VALUE", "container_environment", "service_links"]

POD_IP = "10.244.1.7"
SECRET_VALUE = "token-from-the-secret-0123456789"
FIELDS = {"status.podIP": POD_IP, "spec.nodeName": "node-a", "metadata.name": "srs-0"}


def _variable_name(name: str) -> str:
    """makeEnvVariableName: upper case, "-" as "_"."""
    return name.upper().replace("-", "_")


def service_links(documents: list[Any]) -> dict[str, str]:
    """Every service-link variable for the Services among ``documents``, each given a
    cluster IP of its own (IPv4; the real one is only known once applied)."""
    env: dict[str, str] = {}
    services = [d for d in documents if d["kind"] == "Service"]
    for number, service in enumerate(services, start=1):
        spec = service["spec"]
        if spec.get("clusterIP") == "None":
            continue
        ip = f"10.96.0.{number}"
        prefix = _variable_name(service["metadata"]["name"])
        ports = spec["ports"]
        env[f"{prefix}_SERVICE_HOST"] = ip
        env[f"{prefix}_SERVICE_PORT"] = str(ports[0]["port"])
        for port in ports:
            if port.get("name"):
                env[f"{prefix}_SERVICE_PORT_{_variable_name(port['name'])}"] = str(port["port"])
        for index, port in enumerate(ports):
            protocol = port.get("protocol", "TCP")
            url = f"{protocol.lower()}://{ip}:{port['port']}"
            if index == 0:
                env[f"{prefix}_PORT"] = url
            link = f"{prefix}_PORT_{port['port']}_{protocol.upper()}"
            env[link] = url
            env[f"{link}_PROTO"] = protocol.lower()
            env[f"{link}_PORT"] = str(port["port"])
            env[f"{link}_ADDR"] = ip
    return env


def container_environment(container: dict[str, Any]) -> dict[str, str]:
    """The container's own ``env`` with the cluster's values filled in; ``envFrom`` (whose
    contents live outside the manifests) is refused rather than guessed."""
    assert "envFrom" not in container, "envFrom: the test cannot see what it injects"
    env: dict[str, str] = {}
    for entry in container.get("env", []):
        if "value" in entry:
            env[entry["name"]] = str(entry["value"])
            continue
        source = entry["valueFrom"]
        if "fieldRef" in source:
            env[entry["name"]] = FIELDS[source["fieldRef"]["fieldPath"]]
        elif "secretKeyRef" in source:
            env[entry["name"]] = SECRET_VALUE
        else:
            raise AssertionError(f"no stand-in for {entry['name']}: {source}")
    return env
