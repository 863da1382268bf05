"""The one place the project imports onnxruntime: telemetry is off before it initialises.

onnxruntime's official builds ship Microsoft's 1DS telemetry switched on: about ten seconds into
an embedding loop they resolve mobile.events.data.microsoft.com, post events every few seconds
and keep a persistent device id and an event queue under ~/.cache/Microsoft/. A kiosk must not
talk to anyone, so ``ORT_DISABLE_TELEMETRY=1`` is set before the library is loaded (it is read
once, at initialisation, and stops the uploader, the events and the device id) and the Python
API switch is flipped as well. Everything else imports ``ort`` from here, never onnxruntime
directly (tests/test_offline.py checks both the traffic and the imports).
"""

from __future__ import annotations

import os
import sys

# Forced, not setdefault: nothing in this project may run with telemetry on.
os.environ["ORT_DISABLE_TELEMETRY"] = "1"
LOADED_TOO_EARLY = "onnxruntime" in sys.modules  # someone imported it before us: env var too late

import onnxruntime as ort  # noqa: E402

if hasattr(ort, "disable_telemetry_events"):
    ort.disable_telemetry_events()

__all__ = ["ort", "LOADED_TOO_EARLY"]
