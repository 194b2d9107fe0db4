"""The deployment files load as what they claim to be: every config under deploy/
(the compose one, the Kubernetes ConfigMap's, and each TOML block in docs/deploy.md)
through Ponder's own loader, every YAML file parses, and the Kubernetes Deployment
probes /health and gives in-flight streams their drain time. No network, no Docker."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from ponder.config import load_settings

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
SECRETS = {"VLLM_API_KEY": "engine-key", "PONDER_STORE_URL": "postgresql://ponder@postgres:5432/ponder"}


def yaml_docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def k8s_object(kind: str, name: str) -> dict[str, Any]:
    found = [d for f in sorted(K8S.glob("*.yaml")) for d in yaml_docs(f) if d["kind"] == kind]
    return next(d for d in found if d["metadata"]["name"] == name)


def configmap_toml(tmp_path: Path) -> Path:
    path = tmp_path / "configmap.toml"
    path.write_text(k8s_object("ConfigMap", "ponder-config")["data"]["config.toml"])
    return path


def test_every_yaml_file_under_deploy_parses():
    files = sorted(DEPLOY.rglob("*.yaml")) + sorted(DEPLOY.rglob("*.yml"))
    assert files
    for f in files:
        assert yaml_docs(f), f


@pytest.mark.parametrize("path", sorted(DEPLOY.rglob("*.toml")), ids=lambda p: str(p.relative_to(ROOT)))
def test_config_files_load(path: Path):
    settings = load_settings(path, env=SECRETS)
    spec = settings.models[settings.default_model]
    assert spec.backend == "remote" and spec.api_key == "engine-key"
    assert settings.host == "0.0.0.0" and settings.server.auth == "required"
    assert settings.store.url == SECRETS["PONDER_STORE_URL"]  # the environment supplies the database


def test_configmap_config_loads(tmp_path: Path):
    settings = load_settings(configmap_toml(tmp_path), env=SECRETS)
    spec = settings.models[settings.default_model]
    assert spec.base_url == "http://vllm.ponder.svc:8000/v1"  # the example vLLM Service
    assert k8s_object("Service", "vllm")["metadata"]["namespace"] == "ponder"


def test_docs_config_blocks_load(tmp_path: Path):
    blocks = re.findall(r"```toml\n(.*?)```", (ROOT / "docs" / "deploy.md").read_text(), re.S)
    assert len(blocks) >= 5
    for i, block in enumerate(blocks):
        tomllib.loads(block)
        path = tmp_path / f"block{i}.toml"
        path.write_text(block)
        settings = load_settings(path, env={})
        assert settings.default_model in settings.models, block


def test_ponder_deployment_probes_health_and_drains(tmp_path: Path):
    deployment = k8s_object("Deployment", "ponder")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["path"] == "/health"
    drain = load_settings(configmap_toml(tmp_path), env=SECRETS).server.drain_timeout_s
    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    assert pod["terminationGracePeriodSeconds"] >= drain + float(pre_stop[1])
    env = {e["name"]: e for e in container["env"]}
    assert env["PONDER_STORE_URL"]["valueFrom"]["secretKeyRef"]["name"] == "ponder"
    assert env["VLLM_API_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "ponder"
    assert deployment["spec"]["replicas"] >= 2


def test_compose_wires_the_services():
    (compose,) = yaml_docs(DEPLOY / "compose.yaml")
    services = compose["services"]
    assert set(services) == {"postgres", "vllm", "ponder"}
    assert services["postgres"]["image"].startswith("postgres:16")
    for name in ("postgres", "vllm"):
        assert services[name]["healthcheck"]["test"]
        assert services["ponder"]["depends_on"][name]["condition"] == "service_healthy"
    gpu = services["vllm"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["driver"] == "nvidia" and "gpu" in gpu["capabilities"]
    assert "ports" not in services["vllm"] and "ports" not in services["postgres"]
    ponder = services["ponder"]
    assert "./config.toml:/etc/ponder/config.toml:ro" in ponder["volumes"]
    assert {"PONDER_STORE_URL", "VLLM_API_KEY"} <= set(ponder["environment"])
    drain = load_settings(DEPLOY / "config.toml", env=SECRETS).server.drain_timeout_s
    assert int(ponder["stop_grace_period"].removesuffix("s")) > drain
