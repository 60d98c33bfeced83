"""deploy/: the env example, compose files, Kubernetes manifests and systemd unit are
consistent with the settings tree and accepted by the tools that read them."""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
import typing
from pathlib import Path
from typing import Any

import pytest

from srs import config
from srs.config import load_settings
from tests.deploy.envfile import env_example
from tests.deploy.kubelet import POD_IP, container_environment, service_links
from tests.deploy.tools import DEPLOY, ROOT, load_yaml, tool

ENV_NAME = re.compile(r"\bSRS_[A-Z0-9_]+")
SETTINGS_NAMES = {
    f"{config.ENV_PREFIX}{section.upper()}_{f.name.upper()}"
    for section, cls in typing.get_type_hints(config.Settings).items()
    for f in dataclasses.fields(cls)
}
COMPOSE = DEPLOY / "compose"
KUBERNETES = DEPLOY / "kubernetes"


def deploy_files() -> list[Path]:
    files = [p for p in DEPLOY.rglob("*") if p.is_file()]
    return [*files, ROOT / "Dockerfile"]


def test_env_example_lists_every_setting_with_its_default() -> None:
    text = (DEPLOY / "srs.env.example").read_text()
    assert text == env_example(), "run: python -m tests.deploy.envfile > deploy/srs.env.example"
    assert "#SRS_SIP_PORT=5060\n" in text and "#SRS_MEDIA_PORT_MAX=20000\n" in text


def test_env_example_uncommented_gives_the_defaults() -> None:
    """Every line is a valid value for its setting, as docker and systemd would pass it."""
    environ = dict(line[1:].split("=", 1) for line in env_example().splitlines()
                   if line.startswith("#SRS_"))
    assert set(environ) == SETTINGS_NAMES
    assert load_settings(environ=environ) == load_settings(environ={})


def test_every_srs_variable_in_deploy_is_a_setting() -> None:
    """A renamed or removed setting breaks this test until deploy/ follows it."""
    used: dict[str, set[str]] = {}
    for path in deploy_files():
        for name in ENV_NAME.findall(path.read_text()):
            used.setdefault(name, set()).add(str(path.relative_to(ROOT)))
    unknown = {name: sorted(paths) for name, paths in used.items() if name not in SETTINGS_NAMES}
    assert not unknown, f"not srs settings: {unknown}"
    assert "SRS_MEDIA_ADVERTISED_ADDRESS" in used


def srs_service(path: Path) -> dict[str, Any]:
    (document,) = load_yaml(path)
    assert isinstance(document, dict)
    return typing.cast(dict[str, Any], document["services"]["srs"])


def test_compose_host_networking() -> None:
    srs = srs_service(COMPOSE / "docker-compose.yml")
    assert srs["network_mode"] == "host" and "ports" not in srs
    assert (COMPOSE / srs["build"]["context"] / "Dockerfile").is_file()
    assert srs["stop_signal"] == "SIGTERM" and srs["stop_grace_period"] == "60s"
    env = srs["environment"]
    assert load_settings(environ=env).recordings.dir == Path("/var/lib/srs/recordings")
    mounts = {volume.split(":")[1] for volume in srs["volumes"]}
    assert mounts == {env["SRS_RECORDINGS_DIR"], env["SRS_SERVER_STATE_DIR"]}


def test_compose_published_range_matches_the_settings() -> None:
    srs = srs_service(COMPOSE / "docker-compose.published.yml")
    assert "network_mode" not in srs
    env = dict(srs["environment"])
    assert env["SRS_MEDIA_ADVERTISED_ADDRESS"].startswith("${SRS_MEDIA_ADVERTISED_ADDRESS:?")
    env["SRS_MEDIA_ADVERTISED_ADDRESS"] = "203.0.113.10"
    settings = load_settings(environ=env)
    published = {}
    for entry in srs["ports"]:
        mapping, protocol = entry.split("/")
        host, container = mapping.split(":")
        assert host == container, "srs advertises its own port numbers: keep them equal"
        published.setdefault(protocol, []).append(container)
    rtp = f"{settings.media.port_min}-{settings.media.port_max}"
    assert published["udp"] == [str(settings.sip.port), rtp]
    assert published["tcp"] == [str(settings.sip.port), str(settings.sip.tls_port)]
    even_ports = (settings.media.port_max - settings.media.port_min) // 2 + 1
    assert settings.server.max_sessions * 2 <= even_ports, "two streams per session must fit"


def statefulset(documents: list[Any]) -> dict[str, Any]:
    (found,) = [d for d in documents if d["kind"] == "StatefulSet"]
    return typing.cast(dict[str, Any], found)


def container_env(pod: dict[str, Any]) -> dict[str, str]:
    (container,) = pod["containers"]
    return {e["name"]: e["value"] for e in container["env"] if "value" in e}


@pytest.mark.parametrize("name", ["srs-hostnetwork.yaml", "srs-rtp-range.yaml"])
def test_kubernetes_pods_are_probed_stopped_gently_and_keep_recordings(name: str) -> None:
    documents = load_yaml(KUBERNETES / name)
    sts = statefulset(documents)
    pod = sts["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": 8080}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": 8080}
    assert pod["terminationGracePeriodSeconds"] >= 30
    env = container_env(pod)
    load_settings(environ=env)  # the literal values are valid settings
    claims = {c["metadata"]["name"] for c in sts["spec"]["volumeClaimTemplates"]}
    mounts = {m["mountPath"] for m in container["volumeMounts"] if m["name"] in claims}
    assert {env["SRS_RECORDINGS_DIR"], env["SRS_SERVER_STATE_DIR"]} <= mounts
    secret = [e for e in container["env"] if e["name"] == "SRS_AUTH_TOKENS"]
    assert secret and "secretKeyRef" in secret[0]["valueFrom"]
    assert container["args"][0].rstrip().endswith("exec srs serve")


@pytest.mark.parametrize("name", ["srs-hostnetwork.yaml", "srs-rtp-range.yaml"])
def test_kubernetes_pod_environment_starts_srs(name: str) -> None:
    """What a kubelet injects loads with srs's loader, even with the service links that
    enableServiceLinks: false turns off; the management listener is where probes go."""
    documents = load_yaml(KUBERNETES / name)
    pod = statefulset(documents)["spec"]["template"]["spec"]
    assert pod["enableServiceLinks"] is False
    (container,) = pod["containers"]
    links = service_links(documents)
    if name == "srs-rtp-range.yaml":
        assert links["SRS_0_SERVICE_HOST"] and links["SRS_0_PORT_5060_UDP_ADDR"]
    env = {"KUBERNETES_SERVICE_HOST": "10.96.0.0", "KUBERNETES_SERVICE_PORT": "443",
           **links, **container_environment(container)}
    if "SRS_MEDIA_ADVERTISED_ADDRESS" in container["args"][0]:  # from the ConfigMap
        env["SRS_MEDIA_ADVERTISED_ADDRESS"] = "203.0.113.10"
    settings = load_settings(environ=env)
    assert settings.management.host == POD_IP
    probes = {container[probe]["httpGet"]["port"] for probe in ("livenessProbe", "readinessProbe")}
    assert probes == {settings.management.port}
    with pytest.raises(config.ConfigError, match="SRS_SIP_LISTN: unknown key"):
        load_settings(environ={**env, "SRS_SIP_LISTN": "5060"})


def test_kubernetes_host_network() -> None:
    pod = statefulset(load_yaml(KUBERNETES / "srs-hostnetwork.yaml"))["spec"]["template"]["spec"]
    assert pod["hostNetwork"] is True and pod["dnsPolicy"] == "ClusterFirstWithHostNet"
    rule = pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert rule[0]["topologyKey"] == "kubernetes.io/hostname"


def test_kubernetes_service_publishes_exactly_the_pod_rtp_ports() -> None:
    documents = load_yaml(KUBERNETES / "srs-rtp-range.yaml")
    pod = statefulset(documents)["spec"]["template"]["spec"]
    assert "hostNetwork" not in pod
    settings = load_settings(environ=container_env(pod))
    (service,) = [d for d in documents
                  if d["kind"] == "Service" and d["spec"].get("type") == "LoadBalancer"]
    assert service["spec"]["externalTrafficPolicy"] == "Local"
    assert service["spec"]["selector"] == {
        "statefulset.kubernetes.io/pod-name": f"{service['metadata']['name']}"}
    rtp = sorted(p["port"] for p in service["spec"]["ports"] if p["name"].startswith("rtp-"))
    assert rtp == list(range(settings.media.port_min, settings.media.port_max + 1, 2))
    assert all(p["protocol"] == "UDP" for p in service["spec"]["ports"]
               if p["name"].startswith("rtp-"))
    assert settings.server.max_sessions * 2 <= len(rtp)
    sip = {(p["port"], p["protocol"]) for p in service["spec"]["ports"]
           if p["name"].startswith("sip-")}
    assert sip == {(settings.sip.port, "UDP"), (settings.sip.port, "TCP"),
                   (settings.sip.tls_port, "TCP")}


def test_systemd_unit_is_hardened() -> None:
    text = (DEPLOY / "systemd" / "srs.service").read_text()
    for line in ("NoNewPrivileges=yes", "ProtectSystem=strict", "StateDirectory=srs",
                 "ReadWritePaths=/var/lib/srs", "KillSignal=SIGTERM", "Restart=on-failure",
                 "Environment=SRS_RECORDINGS_DIR=/var/lib/srs/recordings"):
        assert f"\n{line}\n" in text
    (stop,) = re.findall(r"\nTimeoutStopSec=(\d+)\n", text)
    assert int(stop) >= 30


def verify_unit(text: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    analyze = tool("systemd-analyze", "systemd")
    # verify also checks that ExecStart's program exists: point it at this checkout's srs.
    srs = shutil.which("srs") or str(Path(__import__("sys").executable).parent / "srs")
    assert Path(srs).exists(), "srs is not installed in this environment"
    unit = tmp_path / "srs.service"
    unit.write_text(text.replace("ExecStart=/opt/srs/bin/srs ", f"ExecStart={srs} "))
    return subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True,
                          timeout=60, cwd=tmp_path)


def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    done = verify_unit((DEPLOY / "systemd" / "srs.service").read_text(), tmp_path)
    # verify exits 0 on unknown keys and bad values, so its output must be empty too.
    assert done.returncode == 0 and done.stderr.strip() == "", done.stderr


def test_systemd_analyze_verify_reports_a_misspelt_key(tmp_path: Path) -> None:
    text = (DEPLOY / "systemd" / "srs.service").read_text()
    done = verify_unit(text.replace("NoNewPrivileges=", "NoNewPrivilege="), tmp_path)
    assert "Unknown key 'NoNewPrivilege'" in done.stderr
