"""sweeps/capacity.py: what the autoscaler of a `ray up` cluster may add, read from the configs
`ray up` itself prepares (Ray's prepare_config, as it writes ~/ray_bootstrap_config.yaml)."""
from __future__ import annotations

import copy
from pathlib import Path

import yaml
from ray.autoscaler._private.util import prepare_config

from sweeps.capacity import (Autoscaling, NodeType, fitting_types, parse_autoscaling, read_autoscaling, scaled_slots,
                             trials_per_node, unknown_types)

REPO_ROOT = Path(__file__).resolve().parents[1]


def prepared(name: str, **provider: object) -> dict:
    config = yaml.safe_load((REPO_ROOT / name).read_text())
    config["provider"].update(provider)
    return prepare_config(config)


def test_trials_per_node_packs_fractional_gpus_and_counts_cpus():
    node = {"CPU": 4, "GPU": 1}
    assert trials_per_node(node, cpus=1, gpus=0.25) == 4
    assert trials_per_node(node, cpus=1, gpus=0.3) == 3
    assert trials_per_node(node, cpus=2, gpus=0.25) == 2  # CPUs bind first
    assert trials_per_node({"CPU": 0}, cpus=1, gpus=0) == 0  # cluster.yaml's head runs no trial
    assert trials_per_node({"CPU": 8}, cpus=1, gpus=0.5) == 0  # no GPU, no GPU trial


def test_cluster_yaml_scales_to_eight_gpu_workers_of_four_trials():
    scaling = parse_autoscaling(prepared("cluster.yaml"))
    assert {t.name for t in scaling.types} == {"ray.worker.gpu_spot", "ray.worker.gpu_ondemand"}  # not the head
    assert scaling.max_workers == 8
    assert fitting_types(scaling, cpus=1, gpus=0.25) == ["ray.worker.gpu_spot", "ray.worker.gpu_ondemand"]
    # 8 spot + 4 on-demand allowed, but 8 workers in all: 8 x 4 trials at a quarter GPU each.
    assert scaled_slots(scaling, cpus=1, gpus=0.25) == 32
    assert scaled_slots(scaling, cpus=1, gpus=1) == 8
    assert fitting_types(scaling, cpus=1, gpus=2) == []  # no node type has two GPUs
    assert unknown_types(scaling) == []


def test_scaled_slots_takes_the_roomiest_types_first_within_the_cluster_cap():
    big, small = NodeType("big", {"CPU": 8, "GPU": 2}, 2), NodeType("small", {"CPU": 4, "GPU": 1}, 5)
    assert scaled_slots(Autoscaling((small, big), max_workers=3), cpus=1, gpus=0.5) == 2 * 4 + 1 * 2
    assert scaled_slots(Autoscaling((small, big), max_workers=10), cpus=1, gpus=0.5) == 2 * 4 + 5 * 2


def test_cluster_local_yaml_lets_every_listed_machine_join():
    config = prepared("cluster-local.yaml", worker_ips=["10.0.0.1", "10.0.0.2", "10.0.0.3"])
    assert config["max_workers"] == 3
    (node_type,) = config["available_node_types"].values()
    assert node_type["min_workers"] == node_type["max_workers"] == 3  # all of them, at `ray up`
    # The local provider learns a machine's resources when it joins: unknown until then.
    assert unknown_types(parse_autoscaling(config)) == ["local.cluster.node"]


def test_a_one_machine_local_cluster_has_no_worker_types():
    assert parse_autoscaling(prepared("cluster-local.yaml", worker_ips=[])).types == ()


def test_read_autoscaling_reads_the_bootstrap_file_and_nothing_where_there_is_none(tmp_path):
    assert read_autoscaling(tmp_path / "missing.yaml") is None
    path = tmp_path / "ray_bootstrap_config.yaml"
    path.write_text(yaml.safe_dump(copy.deepcopy(prepared("cluster.yaml"))))
    assert scaled_slots(read_autoscaling(path), cpus=1, gpus=0.25) == 32
    path.write_text("{not yaml: [")
    assert read_autoscaling(path) is None  # unreadable: sized by the live nodes instead
