"""A private local Ray that reports nothing, probes no cloud and leaves nothing behind.

Ray 2.60 started locally (issue 23, measured under ``unshare -n`` + strace):
- its dashboard process always loads ``UsageStatsHead``, which reads
  ``~/ray_bootstrap_config.yaml`` and, when that file is missing, asks the cloud metadata
  services (DNS for metadata.google.internal, connects to 169.254.169.254:80) *before* it
  checks that usage stats are off;
- it keeps its sockets and logs under ``/tmp/ray/session_*`` after shutdown;
- it writes a token to ``~/.ray/auth_token`` with the umask's permissions (world-readable);
- (issue 26) a cluster started with ``ray start``, usage stats off, still posts a "usage stats
  disabled" report to usage-stats.ray.io from its dashboard process.

So a private Ray here runs with its own 0700 directory: session files under it, a 0600 token
passed by ``RAY_AUTH_TOKEN_PATH``, and, as the ``HOME`` of Ray's processes, a bootstrap config
that names the provider ``local`` (Ray's own answer for "not a cloud"). The directory is
removed at shutdown.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

QUIET_ENV = {
    "RAY_USAGE_STATS_ENABLED": "0",  # never report usage
    "RAY_USAGE_STATS_PROMPT_ENABLED": "0",
    # A cluster started with `ray start` and usage stats off still posts a "disabled" report
    # to usage-stats.ray.io (UsageStatsHead._report_disabled_usage_sync; found by the red-team
    # test of a two-node cluster). A scheme no HTTP client serves fails before any look-up.
    "RAY_USAGE_STATS_REPORT_URL": "none://usage-stats-off/",
    "RAY_AUTH_MODE": "token",  # other local users cannot drive this Ray
}
BOOTSTRAP = "ray_bootstrap_config.yaml"


SOCKET_ROOM = 80  # Ray adds 'session_<date>_<time>_<pid>/sockets/plasma_store'; AF_UNIX: 107


def make_private_dir() -> Path:
    """A fresh 0700 directory holding a 0600 token and a 'local provider' bootstrap config."""
    base = tempfile.gettempdir()
    if len(base) + SOCKET_ROOM > 107:
        base = "/tmp"  # a long $TMPDIR would make Ray's socket paths too long to bind
    root = Path(tempfile.mkdtemp(prefix="fai-ray-", dir=base))
    os.chmod(root, 0o700)
    fd = os.open(root / "auth_token", os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW,
                 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(secrets.token_hex(32))
    (root / "home").mkdir(mode=0o700)
    (root / "home" / BOOTSTRAP).write_text("provider:\n  type: local\n")
    (root / "s").mkdir(mode=0o700)
    return root


@contextmanager
def private_environment(root: Path) -> Iterator[None]:
    """Environment for starting Ray: quiet settings, the token path and the private HOME
    (Ray's processes inherit them; this process gets its own HOME back afterwards)."""
    saved = {k: os.environ.get(k) for k in (*QUIET_ENV, "RAY_AUTH_TOKEN_PATH", "HOME")}
    os.environ.update(QUIET_ENV)
    os.environ["RAY_AUTH_TOKEN_PATH"] = str(root / "auth_token")
    os.environ["HOME"] = str(root / "home")
    _reload_ray_auth()
    try:
        yield
    finally:
        for key, value in saved.items():
            if key in QUIET_ENV or key == "RAY_AUTH_TOKEN_PATH":
                continue  # this process keeps talking to the Ray it started
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _reload_ray_auth() -> None:
    """Make an already imported Ray see the mode and token set above (it caches both)."""
    try:
        from ray._raylet import AuthenticationTokenLoader, Config
    except ImportError:  # another Ray version: it reads the environment when it starts
        return
    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()


def remove_private_dir(root: Path) -> None:
    """Delete the session files, logs and token once Ray has shut down."""
    shutil.rmtree(root, ignore_errors=True)


def custom_resources(resources: dict[str, float], skip: Sequence[str] = (
        "CPU", "GPU", "memory", "object_store_memory")) -> dict[str, float]:
    """A node's own resources: without the standard ones and Ray's ``node:...`` markers."""
    return {k: v for k, v in resources.items() if k not in skip and not k.startswith("node:")}
