"""python -m fai_infer.harness.milvus_server: a real Milvus server (2.3 standalone), on loopback only.

Why: Milvus Lite (a ``.db`` file) is pure Python and slow past 100k items; the ``milvus`` package
of the ``scale`` extra ships the C++ standalone server (embedded etcd and RocksMQ, no Docker).
This runs it the project's way: closed by default. Milvus 2.3 listens on every interface and on
fixed etcd ports whatever its config says, so it runs in a private network namespace
(``milvus_netns``) where nothing outside can reach it and it can reach nothing; this process is
the only door: it listens on 127.0.0.1:PORT and relays each connection into the namespace.

    python -m fai_infer.harness.milvus_server --data milvus-data --port 19530
    fai push shop.catalog --milvus http://127.0.0.1:19530 --collection shop

It runs until stopped; SIGTERM or SIGINT (Ctrl-C) stops Milvus and everything it started (their
own process group, which also dies if this process is killed) and leaves nothing listening.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import importlib.util
import json
import lzma
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Iterator

from fai_infer.safe_files import open_regular
from fai_infer.scale import INSTALL_HINT

VERSION = "2.3.5"
START_TIMEOUT_S = 300
STOP_TIMEOUT_S = 45
RELAY_BUFFER = 1 << 18
CONFIG_OVERRIDES = {             # dotted key -> value, over the package's template
    "common.gracefulStopTimeout": "10",   # seconds; the template's 1800 makes stop hang
    "log.level": "warn",
    "log.stdout": "false",
    "etcd.log.level": "warn",
    "proxy.http.enabled": "false",        # no REST port: gRPC only
    "trace.exporter": "stdout",
    "trace.sampleFraction": "0",
}


class ServerError(RuntimeError):
    """One line for the user: port busy, folder not writable, binary missing, start failed."""


def package_bin() -> Path:
    """The folder of the ``milvus`` package's compressed binaries, or a clear error."""
    spec = importlib.util.find_spec("milvus")
    folder = Path(spec.origin).parent / "data" if spec and spec.origin else None
    if folder is None or not (folder / "bin" / "milvus.lzma").is_file():
        raise ServerError(f"the Milvus server binary is missing: the 'milvus' package "
                          f"({VERSION}, in the 'scale' extra) is not installed: {INSTALL_HINT}")
    return folder


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "fai" / f"milvus-{VERSION}"


def unpacked_bin(package: Path, cache: Path) -> Path:
    """The server and its libraries, decompressed once per machine (about 250 MB) under a lock,
    so tests and benches do not pay 5 s each time."""
    target = cache / "bin"
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        stamp = target / ".complete"
        sources = sorted((package / "bin").glob("*.lzma"))
        want = "\n".join(f"{p.name} {p.stat().st_size}" for p in sources)
        if stamp.is_file() and stamp.read_text() == want:
            return target
        tmp = Path(tempfile.mkdtemp(dir=cache, prefix="bin-"))
        for src in sources:
            out = tmp / src.name[: -len(".lzma")]
            with lzma.open(src) as r, open(out, "wb") as w:
                shutil.copyfileobj(r, w, 1 << 20)
            out.chmod(0o755)
        (tmp / ".complete").write_text(want)
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)
    return target


def render_config(template: str, data: Path) -> str:
    """The package's config template with our paths, then CONFIG_OVERRIDES by dotted key."""
    values = {"etcd_log_path": str(data / "logs" / "etcd.log"),
              "etcd_data_dir": str(data / "data" / "etcd.data"),
              "local_storage_dir": str(data / "data"),
              "rocksmq_data_dir": str(data / "data" / "rocksmq"),
              "system_log_path": str(data / "logs")}

    def fill(m: re.Match) -> str:
        key, _, default = m.group(1).partition(":")
        key = key.split("(")[0].strip()
        return values.get(key, default.strip())
    text = re.sub(r"\{\{(.*?)\}\}", fill, template)
    out, path = [], []
    for line in text.splitlines():
        m = re.match(r"^( *)([A-Za-z0-9_]+):(.*)$", line)
        if m and not line.lstrip().startswith("#"):
            level = len(m.group(1)) // 2
            path = path[:level] + [m.group(2)]
            key = ".".join(path)
            if key in CONFIG_OVERRIDES:
                line = f"{m.group(1)}{m.group(2)}: {CONFIG_OVERRIDES[key]}"
        out.append(line)
    return "\n".join(out) + "\n"


def check_data(data: Path) -> None:
    """A real folder (not a link) holding no link, FIFO or device anywhere: the server often
    runs as root and writes its configs, logs, ``server.json`` and ``data/`` there, so a
    planted link would make it overwrite the link's target (issue 33)."""
    if data.is_symlink():
        raise ServerError(f"--data {data}: is a symbolic link; give the real folder")
    try:
        data.mkdir(parents=True, exist_ok=True)
        odd = _first_odd_entry(data)
        if odd is not None:
            raise ServerError(f"--data {data}: {odd}; the server would write through it, so "
                              f"remove it")
        for sub in ("configs", "logs", "data"):
            (data / sub).mkdir(exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=data / "data"):
            pass
    except OSError as exc:
        raise ServerError(f"--data {data}: not a writable folder ({exc.strerror or exc})") from None


def _own_log_link(path: Path, data: Path) -> bool:
    """Milvus's own logging (glog) keeps ``logs/milvus.INFO`` and friends as relative links to
    the newest log file beside them: a link under ``logs/`` whose target is a plain name of a
    regular file in the same folder is the server's, not a planted one."""
    target = os.readlink(path)
    if path.parent != data / "logs" or "/" in target or target in ("", ".", ".."):
        return False
    beside = path.parent / target
    return beside.exists() and not beside.is_symlink() and stat.S_ISREG(beside.lstat().st_mode)


def _first_odd_entry(data: Path) -> str | None:
    """'REL is a symbolic link' (or a FIFO, device, socket) for the first such entry under
    ``data``, links not followed; None when there are only folders and regular files."""
    for top, dirs, files in os.walk(data, followlinks=False):
        for name in sorted(dirs) + sorted(files):
            path = Path(top) / name
            mode = path.lstat().st_mode
            if stat.S_ISLNK(mode) and _own_log_link(path, data):
                continue
            if not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
                kind = "a symbolic link" if stat.S_ISLNK(mode) else "not a regular file"
                return f"{path.relative_to(data)} is {kind}"
    return None


def write_own_file(path: Path, text: str) -> None:
    """Write one of the server's files without following a link or blocking on a FIFO that
    appeared after :func:`check_data`."""
    fd = open_regular(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NONBLOCK, 0o644)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)


def lock_data(data: Path):
    """One server per data folder (two would corrupt etcd and RocksMQ). The lock lies in
    ``data/``, the folder the servers really share: a second ``--data`` whose ``data/`` is
    the first's (a link, a bind mount) is refused too."""
    try:
        fd = open_regular(data / "data" / "server.lock",
                          os.O_RDWR | os.O_CREAT | os.O_NONBLOCK, 0o600)
    except OSError as exc:
        raise ServerError(f"--data {data}: cannot create its lock file ({exc})") from None
    f = os.fdopen(fd, "a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.close()
        raise ServerError(f"--data {data}: another milvus_server is using this folder") from None
    return f


def listen(port: int) -> socket.socket:
    if not 0 < port < 65536:
        raise ServerError(f"--port {port}: not a TCP port (1-65535)")
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", port))
    except OSError as exc:
        s.close()
        why = "already in use" if exc.errno == 98 else (exc.strerror or str(exc))
        raise ServerError(f"--port {port}: cannot listen on 127.0.0.1:{port} ({why}); "
                          f"pick another --port") from None
    s.listen(128)
    return s


# -- the relay: 127.0.0.1:PORT here <-> the proxy inside the namespace ----------------------
def _pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(RELAY_BUFFER):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)


def _inside(sock_path: str) -> socket.socket:
    """A TCP connection to the proxy, opened inside the namespace and passed back to us."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as u:
        u.connect(sock_path)
        _, fds, _, _ = socket.recv_fds(u, 1, 1)
    if not fds:
        raise OSError("the namespace gave no connection")
    inner = socket.socket(fileno=fds[0])
    inner.setblocking(True)  # the flag travels with the descriptor: set it, whatever it was
    return inner


def _relay(client: socket.socket, sock_path: str, live: set) -> None:
    try:
        inner = _inside(sock_path)
    except OSError:
        client.close()
        return
    for s in (client, inner):
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    live.update((client, inner))
    back = threading.Thread(target=_pipe, args=(inner, client), daemon=True)
    back.start()
    _pipe(client, inner)
    back.join()
    for s in (client, inner):
        live.discard(s)
        s.close()


def _accept(server: socket.socket, sock_path: str, live: set) -> None:
    while True:
        try:
            client, _ = server.accept()
        except OSError:
            return  # closed: stopping
        threading.Thread(target=_relay, args=(client, sock_path, live), daemon=True).start()


# -- the server's life ----------------------------------------------------------------------
class Server:
    """Milvus in its namespace (a process group of its own) and the loopback relay."""

    def __init__(self, data: Path, port: int, start_timeout: float = START_TIMEOUT_S):
        self.data, self.port, self.start_timeout = data.absolute(), port, start_timeout
        self.proc: subprocess.Popen | None = None
        self.listener: socket.socket | None = None
        self.live: set = set()

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        package = package_bin()
        check_data(self.data)
        self._lock = lock_data(self.data)
        self.listener = listen(self.port)
        try:
            self._start(package)
        except BaseException:
            self.stop()
            raise

    def _start(self, package: Path) -> None:
        bin_dir = unpacked_bin(package, cache_dir())
        template = (package / "config.yaml.template").read_text()
        write_own_file(self.data / "configs" / "milvus.yaml", render_config(template, self.data))
        write_own_file(self.data / "configs" / "glog.conf", (package / "glog.conf").read_text())
        self._sock_dir = tempfile.mkdtemp(prefix="fai-milvus-")
        self.sock = os.path.join(self._sock_dir, "connect.sock")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "fai_infer.harness.milvus_netns", "--data", str(self.data),
             "--bin", str(bin_dir), "--sock", self.sock, "--alias", f"fai-{self.port}",
             "--timeout", str(self.start_timeout)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True,
            start_new_session=True, cwd=self.data, env=_child_env())
        line = self.proc.stdout.readline().strip()
        if line != "ready":
            self.proc.wait(STOP_TIMEOUT_S)
            raise ServerError(line.removeprefix("error: ") or
                              f"the Milvus server exited while starting (status "
                              f"{self.proc.returncode}; see {self.data / 'logs'})")
        write_own_file(self.data / "server.json", json.dumps(
            {"pid": os.getpid(), "group": self.proc.pid, "uri": self.uri, "version": VERSION}))
        threading.Thread(target=_accept, args=(self.listener, self.sock, self.live),
                         daemon=True).start()

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        """Close the door, stop Milvus's whole process group, wait for it."""
        if self.listener is not None:
            self.listener.close()
            self.listener = None
        for s in list(self.live):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
        if self.proc is not None:
            _stop_group(self.proc)
            self.proc = None
        (self.data / "server.json").unlink(missing_ok=True)
        if getattr(self, "_sock_dir", None):
            shutil.rmtree(self._sock_dir, ignore_errors=True)
        if getattr(self, "_lock", None):
            self._lock.close()
            self._lock = None


def _stop_group(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # anything left in the group
    proc.wait()


@contextlib.contextmanager
def running_server(data: Path, port: int, start_timeout: float = START_TIMEOUT_S
                   ) -> Iterator[str]:
    """``with running_server(dir, port) as uri:`` a server in another process (as the command
    line runs it) for tests and benches; stopped with SIGTERM on exit."""
    proc = subprocess.Popen([sys.executable, "-m", "fai_infer.harness.milvus_server", "--data",
                             str(data), "--port", str(port), "--start-timeout",
                             str(start_timeout)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env=_child_env())
    try:
        line = proc.stdout.readline()
        if not line.startswith("milvus"):
            proc.wait(STOP_TIMEOUT_S)
            raise ServerError((proc.stderr.read().strip().splitlines() or ["no output"])[-1])
        yield f"http://127.0.0.1:{port}"
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(STOP_TIMEOUT_S + 15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def _child_env() -> dict[str, str]:
    """Our environment, with this copy of fai_infer first on the path (a child started from
    another folder must import the same code, not another checkout's)."""
    root = str(Path(__file__).resolve().parents[2])
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": root + (os.pathsep + path if path else "")}


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (for tests and benches)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m fai_infer.harness.milvus_server",
                                description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, type=Path, metavar="DIR",
                   help="folder for the server's data, config and logs (created; one server "
                        "per folder; reuse it to keep the collections)")
    p.add_argument("--port", type=int, default=19530,
                   help="gRPC port on 127.0.0.1 (default 19530); the URI is "
                        "http://127.0.0.1:PORT. No other port is opened on this machine")
    p.add_argument("--start-timeout", type=float, default=START_TIMEOUT_S, metavar="S",
                   help=f"give up if Milvus is not healthy after S seconds "
                        f"(default {START_TIMEOUT_S:.0f})")
    a = p.parse_args(argv)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    server = Server(a.data, a.port, a.start_timeout)
    try:
        server.start()
    except ServerError as exc:
        print(f"milvus_server: {exc}", file=sys.stderr)
        return 1
    print(f"milvus {VERSION} listening on {server.uri} (data {server.data}); stop with Ctrl-C "
          f"or SIGTERM", flush=True)
    code = 0
    while not stop.wait(0.5):
        if not server.running():
            print(f"milvus_server: the Milvus server stopped unexpectedly (see "
                  f"{server.data / 'logs'})", file=sys.stderr)
            code = 1
            break
    server.stop()
    return code


if __name__ == "__main__":
    sys.exit(main())
