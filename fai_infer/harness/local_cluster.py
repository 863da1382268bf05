"""A throwaway multi-node Ray cluster on this machine, started with ``ray start``, for the
cluster test and ``bench.scale --cluster``.

Why not ``ray.cluster_utils.Cluster``: the point is to exercise what an operator runs (a head
with ``ray start --head`` and nodes joining with ``ray start --address``), each node a
separate raylet with its own CPUs and a custom resource naming it.

Closed like the private local Ray (``ray_private``): usage stats off, no dashboard, a 0700 directory holding the session files, a 0600 token and the HOME that
stops the cloud-metadata probe; every server binds a loopback address (the head 127.0.0.1,
node i 127.0.0.(i+1), so nodes are told apart by address too).

Why ``stop`` is not ``ray stop``: ``ray stop`` kills every Ray process of the machine, other
people's clusters included. ``stop`` ends only this cluster's processes: ``ray start`` runs
with ``FAI_RAY_CLUSTER=<private dir>`` in its environment, which every process it starts
inherits (the Ray Client proxy, re-parented and without the directory on its command line,
included), then removes the directory.

The cluster dies with its owner: ``start`` first starts ``owner_watchdog`` in a session of its
own, which does what ``stop`` does when the owner is gone, however it ended (SIGKILL included).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from fai_infer.scale.ray_private import QUIET_ENV, make_private_dir, remove_private_dir
from fai_infer.errors import CatalogError

RAY_CLI = str(Path(sys.executable).with_name("ray"))
MARK = "FAI_RAY_CLUSTER"  # in the environment of every process of a LocalCluster


def _start_ticks(pid: int) -> str:
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2:].split()[19]


def free_port() -> int:
    """A TCP port nothing listens on now (bound and released on 127.0.0.1)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalCluster:
    """``nodes`` Ray nodes of ``cpus`` CPUs each; node i has resource ``fai_node_i: 1``."""

    def __init__(self, nodes: int = 2, cpus: int = 1, object_store_mb: int = 256):
        self.nodes, self.cpus, self.object_store_mb = nodes, cpus, object_store_mb
        self.root: Path | None = None
        self.port = 0
        self._seen: dict[int, str] = {}  # pid -> start time (clock ticks) of our processes

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def temp_dir(self) -> Path:
        assert self.root is not None, "the cluster is not started"
        return self.root / "s"

    def env(self) -> dict[str, str]:
        """Environment for ``ray start`` and for drivers joining this cluster (``fai index``):
        quiet, the private token and HOME, and fai_infer importable by the workers."""
        assert self.root is not None, "the cluster is not started"
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
        root = str(Path(__file__).resolve().parents[2])
        path = env.get("PYTHONPATH", "")
        env.update(QUIET_ENV, RAY_AUTH_TOKEN_PATH=str(self.root / "auth_token"),
                   HOME=str(self.root / "home"),
                   PYTHONPATH=os.pathsep.join(p for p in (root, path) if p))
        return env

    def start(self) -> "LocalCluster":
        """Start the head, then each node; on any failure stop what started, raise one line."""
        self.root = make_private_dir()
        self.port = free_port()
        try:
            self.watch()
            for i in range(self.nodes):
                self._ray_start(i)
        except BaseException:
            self.stop()
            raise
        return self

    def watch(self) -> subprocess.Popen:
        """Start the watchdog that stops this cluster when this process ends
        (``fai_infer/harness/owner_watchdog.py``): its own session, so a signal to our process
        group does not reach it; its command line names the private directory, so ``stop``
        ends it with the rest."""
        assert self.root is not None, "make the private directory first"
        owner = os.getpid()
        return subprocess.Popen(
            [sys.executable, "-m", "fai_infer.harness.owner_watchdog", str(owner),
             str(_start_ticks(owner)), str(self.root)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True, env=self.env())

    def _ray_start(self, index: int) -> None:
        common = ["--node-ip-address", "127.0.0.1", "--temp-dir", str(self.temp_dir),
                  "--num-cpus", str(self.cpus), "--num-gpus", "0",
                  "--resources", json.dumps({f"fai_node_{index}": 1}),
                  "--object-store-memory", str(self.object_store_mb * 1024**2),
                  "--disable-usage-stats"]
        env = {**self.env(), MARK: str(self.root)}
        if index == 0:
            # Local-only: Ray keeps 127.0.0.1 instead of swapping in the host's address.
            env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
            command = [RAY_CLI, "start", "--head", "--port", str(self.port),
                       "--include-dashboard=false", "--ray-client-server-port", str(free_port())]
        else:  # that switch refuses a second node: ray start with 127.0.0.1 kept (ray_node)
            command = [sys.executable, "-m", "fai_infer.harness.ray_node", "start",
                       "--address", self.address]
        command += ["--dashboard-agent-listen-port", str(free_port()), *common]
        res = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)
        if res.returncode != 0:
            tail = (res.stderr or res.stdout).strip().splitlines()[-1:] or ["no output"]
            raise CatalogError(f"ray start (node {index}) failed: {tail[0]}")

    def processes(self) -> list[int]:
        """Live process ids of this cluster: those whose environment or command line names
        its private directory, their descendants, and any seen so before (a worker whose
        raylet died is re-parented, not ended)."""
        if self.root is None:
            return []
        mark = str(self.root).encode()
        env_mark = f"\0{MARK}={self.root}\0".encode()
        parent: dict[int, int] = {}
        started: dict[int, str] = {}
        found: set[int] = set()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            pid = int(entry.name)
            try:
                fields = (entry / "stat").read_text()
                fields = fields[fields.rindex(")") + 2:].split()
                if fields[0] == "Z":
                    continue  # ended; its parent has not collected it yet
                parent[pid], started[pid] = int(fields[1]), fields[19]
                if self._seen.get(pid) == fields[19] or mark in (entry / "cmdline").read_bytes():
                    found.add(pid)
                elif env_mark in b"\0" + (entry / "environ").read_bytes() + b"\0":
                    found.add(pid)
            except (OSError, ValueError, IndexError):
                continue
        grew = True
        while grew:
            more = {pid for pid, ppid in parent.items() if ppid in found} - found
            found |= more
            grew = bool(more)
        self._seen.update({pid: started[pid] for pid in found})  # (pid, start time): no reuse
        return sorted(found)

    def stop(self, grace_s: float = 10.0) -> list[int]:
        """SIGTERM this cluster's processes, SIGKILL what is left after ``grace_s``, remove the
        private directory; returns the ids still alive (none, unless the kernel lags)."""
        for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
            for pid in self.processes():
                try:
                    os.kill(pid, sig)
                except OSError:
                    pass
            deadline = time.monotonic() + wait
            while self.processes() and time.monotonic() < deadline:
                time.sleep(0.2)
        left = self.processes()
        if self.root is not None:
            remove_private_dir(self.root)
        return left

    def __enter__(self) -> "LocalCluster":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
