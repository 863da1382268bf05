"""``python -m fai_infer.harness.owner_watchdog OWNER_PID OWNER_START ROOT``: end a
``LocalCluster`` when the process that owns it is gone.

Why a watchdog and not a parent-death signal: ``ray start`` daemonises, so Ray's servers are
re-parented as soon as it returns and a ``PR_SET_PDEATHSIG`` set on it would reach none of
them. Before (issue 33) a SIGKILLed owner left 12 Ray processes, 8 loopback listeners and the
private directory with its token. This process runs in a session of its own, waits on the
owner's pidfd (no polling), then stops every process marked with the cluster's private
directory exactly as ``LocalCluster.stop`` does and removes the directory. A normal ``stop``
ends it like any other process of the cluster (its command line names the directory).
"""

from __future__ import annotations

import os
import select
import sys
from pathlib import Path


def start_ticks(pid: int) -> str | None:
    """The process's start time in clock ticks (field 22 of /proc/PID/stat): with the pid, an
    identity that a reused pid cannot fake; None if there is no such process."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
        return text[text.rindex(")") + 2:].split()[19]
    except (OSError, ValueError, IndexError):
        return None


def wait_for_exit(pid: int, ticks: str) -> None:
    """Return when process ``pid`` started at ``ticks`` has ended (at once if it already has)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        if start_ticks(pid) != ticks:
            return  # the owner ended before we looked, and its pid was reused
        select.select([fd], [], [])
    finally:
        os.close(fd)


def main(argv: list[str] | None = None) -> int:
    owner, ticks, root = (sys.argv[1:] if argv is None else argv)
    wait_for_exit(int(owner), ticks)
    from fai_infer.harness.local_cluster import LocalCluster

    cluster = LocalCluster()
    cluster.root = Path(root)
    if cluster.root.exists() or cluster.processes():
        cluster.stop(grace_s=5.0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
