"""What a benchmark ran on: every printed figure states its machine and the load it ran under."""
from __future__ import annotations

import os
import platform


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def describe() -> str:
    """Host, CPU model, usable cores and the load average (the contention the numbers were taken under)."""
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return f"{platform.node()}: {cpu_model()}, {len(os.sched_getaffinity(0))} usable cores, load average {load}"
