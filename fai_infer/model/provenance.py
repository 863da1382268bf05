"""What made a figure: the model files' sha256, the CPU and its flags, the date and the command.

Every JSON a bench or an evaluation writes carries this block, so a number in the docs can be
traced to the exact model bytes and the kernel path (AVX2 or VNNI) that produced it, and a
figure measured on another model or CPU is seen as such instead of drifting silently.
"""

from __future__ import annotations

import datetime
import os
import platform
import sys
from typing import Any, Iterable

from fai_infer.model.cpu import cpu_flags, int8_path
from fai_infer.model.identity import file_sha256_or_none


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def provenance(models: Iterable[str | os.PathLike] = ()) -> dict[str, Any]:
    """The block to store beside a report's figures (``report["provenance"]``)."""
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([os.path.basename(sys.argv[0] or "python")] + sys.argv[1:]),
        "cpu": _cpu_model(),
        "cpu_flags": list(cpu_flags()),
        "int8_path": int8_path(),
        "cores": os.cpu_count(),
        "models": {str(m): file_sha256_or_none(m) for m in models},
    }
