"""How many trials a Ray cluster can run: the nodes up now, plus the nodes its autoscaler may add.

`ray up cluster.yaml` starts only the CPU head; the GPU workers (``min_workers: 0``) appear when
trials wait for GPUs. A sweep started right after `ray up` therefore sees no GPU, and sizing it
by the live nodes alone would refuse it, or cap its concurrency at whatever happened to be up,
so the autoscaler would never see the demand to add more.

Ray exposes no public API for the autoscaler's node types. The cluster launcher writes them to
``~/ray_bootstrap_config.yaml`` on the head (where the README runs the driver, by `ray exec` or
`ray job submit`); Ray Tune reads the same file to tell an autoscaling cluster
(``ray.tune.execution.cluster_info._is_ray_cluster``). The functions on resources are pure.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

BOOTSTRAP_CONFIG = "~/ray_bootstrap_config.yaml"


@dataclass(frozen=True)
class NodeType:
    """One worker type the autoscaler may launch."""

    name: str
    resources: Mapping[str, float]
    max_workers: int


@dataclass(frozen=True)
class Autoscaling:
    """The worker types of an autoscaling cluster and its cap on workers in all."""

    types: tuple[NodeType, ...]
    max_workers: int


def trials_per_node(resources: Mapping[str, float], *, cpus: float, gpus: float) -> int:
    """How many trials of (cpus, gpus) fit on one node: the bin Ray's scheduler packs."""
    fits = [resources.get("CPU", 0) / cpus]
    if gpus > 0:
        fits.append(resources.get("GPU", 0) / gpus)
    return int(min(fits) + 1e-9)  # 1e-9: a quotient like 3.9999999 still counts as 4


def parse_autoscaling(config: Mapping[str, Any]) -> Autoscaling:
    """The types the autoscaler may launch workers of, from a cluster-launcher config (the bootstrap
    file `ray up` writes, with the provider's resources filled in). The head's type counts only
    where workers share it (Ray's local provider has one type for all machines)."""
    head = config.get("head_node_type")
    cap = int(config.get("max_workers", 0))
    types = []
    for name, spec in (config.get("available_node_types") or {}).items():
        count = int(spec.get("max_workers", 0 if name == head else cap))
        if count > 0:
            types.append(NodeType(name=name, max_workers=count,
                                  resources={k: float(v) for k, v in (spec.get("resources") or {}).items()}))
    return Autoscaling(types=tuple(types), max_workers=cap)


def read_autoscaling(path: str | Path = BOOTSTRAP_CONFIG) -> Autoscaling | None:
    """This head's autoscaler config, or None where there is none (local Ray, `ray start` by hand)."""
    path = Path(path).expanduser()
    if not path.is_file():
        return None
    import yaml  # only on a launcher-made head

    try:
        config = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return None  # unreadable: size the sweep by the live nodes, as without an autoscaler
    return parse_autoscaling(config) if isinstance(config, Mapping) else None


def scaled_slots(scaling: Autoscaling, *, cpus: float, gpus: float) -> int:
    """Trials the autoscaler's workers can run at once at full size: the roomiest types first, up to
    each type's ``max_workers`` and the cluster's ``max_workers`` in all."""
    per_node = sorted(((trials_per_node(t.resources, cpus=cpus, gpus=gpus), t.max_workers) for t in scaling.types),
                      reverse=True)
    slots, nodes_left = 0, scaling.max_workers
    for fit, count in per_node:
        take = min(count, nodes_left)
        slots, nodes_left = slots + fit * take, nodes_left - take
    return slots


def fitting_types(scaling: Autoscaling, *, cpus: float, gpus: float) -> list[str]:
    """Names of the worker types one trial fits on."""
    return [t.name for t in scaling.types if trials_per_node(t.resources, cpus=cpus, gpus=gpus) >= 1]


def unknown_types(scaling: Autoscaling) -> list[str]:
    """Worker types whose resources the config does not give (Ray's local provider learns them
    only when a machine joins): nothing can be said about them before then."""
    return [t.name for t in scaling.types if not t.resources]
