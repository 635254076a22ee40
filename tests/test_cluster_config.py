"""cluster.yaml and cluster-local.yaml, checked without a cloud: Ray's own schema, the sweep's
per-trial resources against the node types, and the security rules (no world-open port, token
auth on every node, dashboard and MLflow on 127.0.0.1, no credentials in the files)."""
from __future__ import annotations

import copy
import ipaddress
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import ray
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

from sweeps.capacity import trials_per_node
from sweeps.config import SweepConfig

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ("cluster.yaml", "cluster-local.yaml")
# What README tells cluster users to pass: one CPU and a quarter of an A10G/L4 per small CNN.
CLUSTER_CPUS_PER_TRIAL = 1.0
CLUSTER_GPUS_PER_TRIAL = 0.25


def load(name: str) -> dict[str, Any]:
    return yaml.safe_load((REPO_ROOT / name).read_text())


def gpu_worker_types(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: spec for name, spec in config["available_node_types"].items()
            if name != config["head_node_type"] and spec.get("resources", {}).get("GPU", 0) > 0}


def ray_start_commands(config: dict[str, Any]) -> list[str]:
    return [c for key in ("head_start_ray_commands", "worker_start_ray_commands")
            for c in config[key] if "ray start" in c]


@pytest.mark.parametrize("name", CONFIGS)
def test_config_passes_rays_own_schema(name: str) -> None:
    # prepare_config fills in the provider's defaults exactly as `ray up` does before validating.
    validate_config(prepare_config(load(name)))


def test_schema_check_rejects_a_misspelled_field() -> None:
    config = load("cluster.yaml")
    broken = copy.deepcopy(config)
    broken["available_node_types"]["ray.worker.gpu_spot"]["priorty"] = 10
    with pytest.raises(jsonschema.ValidationError, match="priorty"):
        validate_config(prepare_config(broken))


def test_gpu_workers_fit_the_sweeps_per_trial_resources() -> None:
    config = load("cluster.yaml")
    workers = gpu_worker_types(config)
    assert len(workers) >= 2, "a spot type and an on-demand fallback type"
    default = SweepConfig()
    for name, spec in workers.items():
        resources = spec["resources"]
        assert trials_per_node(resources, cpus=default.cpus_per_trial, gpus=default.gpus_per_trial) >= 1, name
        # Fractional GPUs pack: four small-CNN trials share one GPU, each with its own CPU.
        assert trials_per_node(resources, cpus=CLUSTER_CPUS_PER_TRIAL, gpus=CLUSTER_GPUS_PER_TRIAL) == 4, name
    # The head runs the driver and MLflow, never a trial, so trials always land on GPU workers.
    assert config["available_node_types"][config["head_node_type"]]["resources"].get("CPU") == 0


def test_spot_workers_are_preferred_with_on_demand_fallback() -> None:
    workers = gpu_worker_types(load("cluster.yaml"))
    spot = {n: s for n, s in workers.items()
            if s["node_config"].get("InstanceMarketOptions", {}).get("MarketType") == "spot"}
    on_demand = {n: s for n, s in workers.items() if n not in spot}
    assert spot and on_demand
    for s_name, s_spec in spot.items():
        for o_name, o_spec in on_demand.items():
            # Equal resources: the autoscaler's utilisation score ties and `priority` decides.
            assert s_spec["resources"] == o_spec["resources"], (s_name, o_name)
            assert s_spec["node_config"]["InstanceType"] == o_spec["node_config"]["InstanceType"]
            assert s_spec["priority"] > o_spec["priority"], (s_name, o_name)


def _cidrs(node: Any) -> list[str]:
    """Every string in the config that parses as an IP network."""
    if isinstance(node, dict):
        return [c for v in node.values() for c in _cidrs(v)]
    if isinstance(node, list):
        return [c for v in node for c in _cidrs(v)]
    if isinstance(node, str):
        found = []
        for token in re.findall(r"[0-9a-fA-F:.]+/\d+", node):
            try:
                found.append(str(ipaddress.ip_network(token, strict=False)))
            except ValueError:
                continue
        return found
    return []


@pytest.mark.parametrize("name", CONFIGS)
def test_no_port_is_open_to_the_world(name: str) -> None:
    config = load(name)
    assert not [c for c in _cidrs(config) if c in ("0.0.0.0/0", "::/0")]
    text = (REPO_ROOT / name).read_text()
    assert "--dashboard-host=0.0.0.0" not in text and "--host 0.0.0.0" not in text
    for command in config["head_start_ray_commands"]:
        if "ray start --head" in command:
            assert "--dashboard-host=127.0.0.1" in command
    assert any("mlflow server --host 127.0.0.1" in c for c in config["head_setup_commands"])


def test_every_aws_node_uses_a_prepared_security_group() -> None:
    # Without SecurityGroupIds Ray creates a group with SSH open to 0.0.0.0/0 (see cluster.yaml).
    for name, spec in load("cluster.yaml")["available_node_types"].items():
        assert spec["node_config"].get("SecurityGroupIds"), name


@pytest.mark.parametrize("name", CONFIGS)
def test_token_auth_is_on_for_every_node(name: str) -> None:
    config = load(name)
    starts = ray_start_commands(config)
    assert len(starts) == 2
    assert all("RAY_AUTH_MODE=token" in c for c in starts)
    # The token reaches every node through file_mounts (the head re-syncs them to workers).
    assert config["file_mounts"].get("~/.ray/auth_token") == "~/.ray/auth_token"


@pytest.mark.parametrize("name", CONFIGS)
def test_no_credentials_and_pinned_versions(name: str) -> None:
    text = (REPO_ROOT / name).read_text()
    for secret in ("aws_access_key_id", "aws_secret_access_key", "AKIA", "RAY_AUTH_TOKEN=", "password"):
        assert secret.lower() not in text.lower(), secret
    setup = " ".join(load(name)["setup_commands"])
    # The launcher needs the same Ray on laptop and cluster; the pin must track the installed one.
    assert f"ray[default,tune]=={ray.__version__}" in setup
    # Workers the autoscaler adds later must install what the head has, not newer releases.
    for package in ("torch", "torchvision", "hyperopt", "mlflow", "pandas", "numpy", "pyarrow"):
        assert re.search(rf'"{package}==\d+\.\d+\.\d+"', setup), package
    assert "python3.11" in setup or "--python 3.11" in setup


@pytest.mark.parametrize("name", CONFIGS)
def test_the_package_is_installed_from_the_synced_tree(name: str) -> None:
    config = load(name)
    mounts = config["file_mounts"]
    for local in ("./pyproject.toml", "./trainables", "./sweeps", "./analysis"):
        assert local in mounts.values()
        assert (REPO_ROOT / local).exists(), local
    assert any(c.endswith("pip install -e ~/cnn-sweeps") or "install --python ~/venv/bin/python -e ~/cnn-sweeps" in c
               for c in config["setup_commands"])


def test_results_go_to_shared_storage() -> None:
    text = (REPO_ROOT / "cluster.yaml").read_text()
    assert "s3://REPLACE-ME-cnn-sweeps-results/ray_results" in text
    assert "--artifacts-destination s3://REPLACE-ME-cnn-sweeps-results/mlflow-artifacts" in text
