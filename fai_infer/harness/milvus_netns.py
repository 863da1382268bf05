"""The inside half of ``milvus_server``: a Milvus standalone in a private network namespace.

Why a namespace: the Milvus 2.3 binary listens on every interface (``:19530``, ``:9091``, the
coordinators' ports) whatever its config says, and embedded etcd takes fixed ports. In a new
network namespace the only interface is a private loopback, so nothing Milvus opens is reachable
from the network, two servers never collide on a port, and nothing can connect out (no
telemetry). ``milvus_server`` (outside) reaches the proxy by asking this process, over a Unix
socket, for a TCP connection opened in here (the file descriptor is passed back).

Run only by ``milvus_server``: ``python -m fai_infer.harness.milvus_netns --data DIR --bin DIR
--sock PATH``. It prints ``ready`` once Milvus is healthy, or one ``error: ...`` line.
"""

from __future__ import annotations

import argparse
import ctypes
import fcntl
import os
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from fai_infer.safe_files import open_regular

CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
PR_SET_PDEATHSIG = 1
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
PROXY_PORT = 19530      # inside the namespace: fixed, nobody else is there
METRICS_PORT = 9091     # /healthz, inside the namespace only
STOP_WAIT_S = 30        # Milvus is told to stop gracefully within 10 s (config); then SIGKILL

_libc = ctypes.CDLL(None, use_errno=True)


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """Get ``sig`` when the process that started us dies (so nothing outlives a SIGKILL)."""
    _libc.prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)


def private_network() -> None:
    """Enter a new network namespace (as root directly, else inside a new user namespace that
    maps us to root) and bring its loopback up."""
    uid, gid = os.getuid(), os.getgid()
    if _libc.unshare(CLONE_NEWNET) != 0:
        if _libc.unshare(CLONE_NEWUSER | CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"unshare: {os.strerror(err)} (user namespaces disabled? "
                               f"kernel.unprivileged_userns_clone / user.max_user_namespaces)")
        Path("/proc/self/setgroups").write_text("deny")
        Path("/proc/self/uid_map").write_text(f"0 {uid} 1")
        Path("/proc/self/gid_map").write_text(f"0 {gid} 1")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        req = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(s, SIOCGIFFLAGS, req))[1]
        fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | IFF_UP))


def healthy() -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{METRICS_PORT}/healthz", timeout=2) as r:
            return b"OK" in r.read()
    except OSError:
        return False


def start_milvus(data: Path, bin_dir: Path, alias: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MILVUS", "ETCD"))}
    env.update(DEPLOY_MODE="STANDALONE", METRICS_PORT=str(METRICS_PORT),
               LD_LIBRARY_PATH=str(bin_dir), TMPDIR=str(data / "tmp"),
               MILVUSCONF=str(data / "configs"))
    (data / "tmp").mkdir(exist_ok=True)
    logs = data / "logs"
    # never through a link planted in --data (the server often runs as root; issue 33)
    out = os.fdopen(open_regular(logs / "milvus-stdout.log",
                                 os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NONBLOCK, 0o644),
                    "ab")
    try:
        return subprocess.Popen([str(bin_dir / "milvus"), "run", "standalone", "-alias", alias],
                                cwd=data, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, preexec_fn=die_with_parent)
    finally:
        out.close()


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(STOP_WAIT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def serve_connections(sock_path: str, proc: subprocess.Popen, stopping: list[bool]) -> None:
    """Answer each connection on the Unix socket with a fresh TCP connection to the proxy."""
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(sock_path)
    os.chmod(sock_path, 0o600)
    srv.listen(64)
    srv.settimeout(0.5)
    try:
        while not stopping[0] and proc.poll() is None:
            try:
                conn, _ = srv.accept()
            except (socket.timeout, InterruptedError):
                continue
            with conn:
                try:
                    tcp = socket.create_connection(("127.0.0.1", PROXY_PORT), timeout=10)
                except OSError:
                    continue  # the caller sees a closed socket and drops its client
                with tcp:
                    tcp.settimeout(None)  # blocking, for the relay that receives it
                    socket.send_fds(conn, [b"1"], [tcp.fileno()])
    finally:
        srv.close()
        Path(sock_path).unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m fai_infer.harness.milvus_netns",
                                description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, type=Path)
    p.add_argument("--bin", required=True, type=Path)
    p.add_argument("--sock", required=True)
    p.add_argument("--alias", default="fai")
    p.add_argument("--timeout", type=float, default=300)
    a = p.parse_args(argv)
    die_with_parent()
    stopping = [False]

    def on_signal(signum, frame):
        stopping[0] = True
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        private_network()
    except OSError as exc:
        print(f"error: cannot make a private network for Milvus ({exc})", flush=True)
        return 2
    proc = start_milvus(a.data, a.bin, a.alias)
    try:
        deadline = time.monotonic() + a.timeout
        while not healthy():
            if proc.poll() is not None:
                print(f"error: Milvus exited with status {proc.returncode} while starting "
                      f"(see {a.data / 'logs'})", flush=True)
                return 1
            if stopping[0]:
                return 0
            if time.monotonic() > deadline:
                print(f"error: Milvus was not healthy within {a.timeout:.0f}s (see "
                      f"{a.data / 'logs'})", flush=True)
                return 1
            time.sleep(0.3)
        print("ready", flush=True)
        serve_connections(a.sock, proc, stopping)
        if proc.poll() is not None and not stopping[0]:
            print(f"error: Milvus exited with status {proc.returncode}", flush=True)
            return 1
        return 0
    finally:
        stop(proc)


if __name__ == "__main__":
    sys.exit(main())
