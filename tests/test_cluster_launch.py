"""`ray up cluster-local.yaml` for real, over SSH to 127.0.0.1; a smoke sweep on the cluster it
launched; a client without the token refused; `ray down` leaving no Ray process behind.

The cluster lives in its own Linux namespaces (network, PID, mount; `unshare`, needs root):
`ray stop`, which the launcher runs on every node, kills every Ray process it can see, so on a
shared machine it must see only this cluster's. In there a private sshd on port 22 accepts a
key made for the test, /etc/passwd gives root a temporary home (so ~/.bashrc, ~/.ray/auth_token
and ~/cnn-sweeps are the test's own), and /tmp/ray is a fresh tmpfs. The config is
cluster-local.yaml with only the machine-specific values replaced (see `local_config`).
"""
from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml
from mlflow.tracking import MlflowClient

from trainables import metrics

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[1]
SSHD = Path("/usr/sbin/sshd")
# The one command of cluster-local.yaml's setup the test skips: it would reinstall Ray and
# torch, and `pip install -e ~/cnn-sweeps` would repoint this checkout's shared venv at the copy.
SKIPPED_SETUP = ("pip install",)


def _reaper_init() -> str:
    """PID 1 of the namespace: reaps orphans (else `ray stop` waits on zombies) and holds it open."""
    return ("import os, time\n"
            "while True:\n"
            "    try:\n"
            "        os.waitpid(-1, 0)\n"
            "    except ChildProcessError:\n"
            "        time.sleep(0.2)\n")


class Namespace:
    """A throwaway 'machine': its own network, process table and home for root."""

    def __init__(self, root: Path):
        self.root = root
        self.home = root / "home"
        self.key = root / "id_ed25519"
        self.home.mkdir()
        # The login shell reads ~/.profile; the config's setup appends its environment to ~/.bashrc.
        (self.home / ".profile").write_text("[ -f ~/.bashrc ] && . ~/.bashrc\n")
        # The config's `test -x ~/venv/bin/python || python3.11 -m venv ~/venv` finds this one.
        (self.home / "venv").symlink_to(Path(sys.prefix))
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "cnn-sweeps-test", "-f", str(self.key)],
                       check=True)
        shutil.copy(f"{self.key}.pub", root / "authorized_keys")
        passwd = Path("/etc/passwd").read_text().splitlines()
        (root / "passwd").write_text("\n".join(
            f"root:x:0:0:root:{self.home}:/bin/bash" if line.startswith("root:") else line for line in passwd) + "\n")
        init = root / "init.sh"
        init.write_text("\n".join([
            "set -e",
            "ip link set lo up",
            f"mount --bind {root / 'passwd'} /etc/passwd",
            "mount -t tmpfs tmpfs /tmp/ray",
            "mkdir -p /run/sshd",
            f"{SSHD} -p 22 -o AuthorizedKeysFile={root / 'authorized_keys'} -o StrictModes=no "
            f"-o PidFile={root / 'sshd.pid'}",
            f"exec {sys.executable} -c '{_reaper_init()}'",
        ]))
        Path("/tmp/ray").mkdir(exist_ok=True)
        self.proc = subprocess.Popen(["unshare", "--net", "--pid", "--fork", "--mount-proc", "--kill-child",
                                      "bash", str(init)], start_new_session=True)
        self.pid = self._init_pid()

    def _init_pid(self) -> int:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
            pids = children.read_text().split() if children.exists() else []
            if pids and (self.root / "sshd.pid").exists():
                return int(pids[0])
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise RuntimeError(f"the test namespace did not start (unshare exit {self.proc.poll()})")

    def env(self, **extra: str) -> dict[str, str]:
        env = {"HOME": str(self.home), "PATH": f"{Path(sys.prefix) / 'bin'}:/usr/sbin:/usr/bin:/sbin:/bin",
               "LANG": "C.UTF-8", "RAY_USAGE_STATS_ENABLED": "0"}
        env.update(extra)
        return env

    def run(self, command: str, *, timeout: float, env: dict[str, str] | None = None,
            check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(["nsenter", "-t", str(self.pid), "--net", "--pid", "--mount", "--",
                               "env", "-i", *[f"{k}={v}" for k, v in (env or self.env()).items()],
                               "bash", "-c", f"cd {REPO_ROOT} && {command}"],
                              capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"`{command}` exited {proc.returncode}\n--- stdout\n{proc.stdout[-6000:]}"
                                 f"\n--- stderr\n{proc.stderr[-6000:]}")
        return proc

    def processes(self) -> list[str]:
        return self.run("ps -eo comm=", timeout=30).stdout.split()

    def close(self) -> None:
        # SIGKILL of the namespace's PID 1 makes the kernel kill everything inside it.
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=30)


def local_config(ns: Namespace, *, source: dict[str, Any]) -> dict[str, Any]:
    """cluster-local.yaml pointed at this machine; nothing else changes."""
    config = dict(source)
    config["cluster_name"] = f"cnn-sweeps-test-{os.getpid()}"
    config["provider"] = {**source["provider"], "head_ip": "127.0.0.1", "worker_ips": []}
    config["auth"] = {"ssh_user": "root", "ssh_private_key": str(ns.key)}
    config["setup_commands"] = [c for c in source["setup_commands"] if not any(s in c for s in SKIPPED_SETUP)]
    return config


@pytest.fixture(scope="module")
def ns(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Namespace]:
    missing = [tool for tool in ("unshare", "nsenter", "rsync", "ssh", "ssh-keygen") if shutil.which(tool) is None]
    missing += [] if SSHD.exists() else [str(SSHD)]
    missing += [] if os.geteuid() == 0 else ["root (for unshare and sshd)"]
    if missing:
        pytest.fail(f"The launch test needs root, util-linux unshare/nsenter, openssh-server and rsync; missing: "
                    f"{', '.join(missing)}. Run `apt-get install -y openssh-server rsync` as root.")
    namespace = Namespace(tmp_path_factory.mktemp("cluster-ns"))
    try:
        yield namespace
    finally:
        namespace.close()


@pytest.fixture(scope="module")
def launched(ns: Namespace) -> Iterator[Path]:
    source = yaml.safe_load((REPO_ROOT / "cluster-local.yaml").read_text())
    skipped = [c for c in source["setup_commands"] if any(s in c for s in SKIPPED_SETUP)]
    assert len(skipped) == 2, skipped  # Ray+torch pins, and the package from the synced tree
    config_path = ns.root / "cluster.yaml"
    config_path.write_text(yaml.safe_dump(local_config(ns, source=source), sort_keys=False))
    # Generated on the "laptop" before `ray up`, as README says; file_mounts carry it to the head.
    ns.run("ray get-auth-token --generate >/dev/null", timeout=60)
    started = time.monotonic()
    up = ns.run(f"ray up -y --no-config-cache {config_path}", timeout=240)
    (ns.root / "ray_up.log").write_text(up.stdout + up.stderr)
    print(f"ray up: {time.monotonic() - started:.1f}s")
    yield config_path


def ray_exec(ns: Namespace, config: Path, command: str, *, timeout: float) -> subprocess.CompletedProcess[str]:
    return ns.run(f"ray exec {config} {shlex.quote(command)}", timeout=timeout)


def test_ray_up_starts_the_head_with_token_auth_and_synced_tree(ns: Namespace, launched: Path) -> None:
    status = ray_exec(ns, launched, "ray status && env | grep ^RAY_AUTH_MODE && ls ~/cnn-sweeps", timeout=120)
    assert "1 local.cluster.node" in status.stdout
    assert "RAY_AUTH_MODE=token" in status.stdout
    for synced in ("pyproject.toml", "trainables", "sweeps", "analysis"):
        assert synced in status.stdout
    assert (ns.home / "cnn-sweeps" / "sweeps" / "cifar.py").read_text() == (REPO_ROOT / "sweeps" / "cifar.py").read_text()
    assert "raylet" in ns.processes() and "gcs_server" in ns.processes()


def wait_for_mlflow(ns: Namespace, *, timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if ns.run("curl -sf http://127.0.0.1:5000/health", timeout=30, check=False).returncode == 0:
            return
        time.sleep(1)
    log = ns.home / "mlflow" / "server.log"
    raise AssertionError(f"MLflow did not come up on the head: {log.read_text()[-3000:] if log.exists() else 'no log'}")


def test_smoke_sweep_runs_on_the_launched_cluster(ns: Namespace, launched: Path, cifar_dir: Path,
                                                  tmp_path: Path) -> None:
    wait_for_mlflow(ns)
    space = tmp_path / "space.yaml"
    space.write_text("lr: {choice: [0.05, 0.1]}\nbatch_size: 64\nnum_blocks: 1\nconvs_per_block: 1\n"
                     "filters: 4\nhead_layers: 0\naugment: false\n")
    storage = tmp_path / "results"  # on a real cluster: s3://... or an NFS path every node mounts
    sweep = (f"cd ~/cnn-sweeps && python -m sweeps.cifar --address auto --search random --scheduler fifo "
             f"--space {space} --num-samples 2 --max-epochs 2 --subset 200 --data-dir {cifar_dir} "
             f"--storage-path {storage} --name on-cluster --verbose 0 "
             f"--mlflow-tracking-uri http://127.0.0.1:5000")
    ray_exec(ns, launched, sweep, timeout=300)
    trials = sorted(p for p in (storage / "on-cluster").iterdir() if p.is_dir() and (p / "result.json").exists())
    assert len(trials) == 2
    client = MlflowClient(f"sqlite:///{ns.home / 'mlflow' / 'mlflow.db'}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()],
                              filter_string=f"tags.`{metrics.TAG_ROLE}` = '{metrics.ROLE_TRIAL}'")
    assert len(runs) == 2
    assert {r.info.status for r in runs} == {"FINISHED"}


def test_a_client_without_the_token_is_refused(ns: Namespace, launched: Path) -> None:
    connect = f"{sys.executable} -c \"import ray; ray.init(address='127.0.0.1:6379'); print('CONNECTED')\""
    clients = {  # name -> environment; the refused ones retry for ~20 s, so all three run at once
        "no_token": f"env HOME={ns.root} RAY_AUTH_MODE=disabled",
        "wrong_token": "env RAY_AUTH_MODE=token RAY_AUTH_TOKEN=not-the-token",
        "with_token": "env RAY_AUTH_MODE=token",
    }
    out = ns.root / "clients"
    out.mkdir(exist_ok=True)
    ns.run(" ".join(f"({env} {connect} > {out / name}.log 2>&1; echo $? > {out / name}.rc) &"
                    for name, env in clients.items()) + " wait", timeout=180)
    result = {name: ((out / f"{name}.log").read_text(), int((out / f"{name}.rc").read_text())) for name in clients}
    assert "CONNECTED" in result["with_token"][0], result["with_token"][0][-3000:]
    for name in ("no_token", "wrong_token"):
        log, rc = result[name]
        assert rc != 0 and "CONNECTED" not in log, (name, log[-3000:])
        # Refused for the token, not for anything else (address, version).
        assert "InvalidAuthToken" in log, (name, log[-3000:])
    gcs_log = ns.run("cat /tmp/ray/session_latest/logs/gcs_server.out", timeout=30).stdout
    assert "Missing authorization header" in gcs_log


def test_ray_down_stops_every_ray_process(ns: Namespace, launched: Path) -> None:
    ns.run(f"ray down -y {launched}", timeout=180)
    left = [p for p in ns.processes() if p in ("raylet", "gcs_server") or p.startswith("ray::")]
    assert left == []
