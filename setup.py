"""Build hook: a wheel carries what the runtime needs outside the checkout.

pyproject.toml holds the metadata; this only extends build_py so that a built wheel holds
(1) the shipped default model and garment parser as package data (``fai_infer/models/``: the checkout keeps it in
the top-level ``models/``) and (2) the telemetry start-up hook ``.pth`` at the root of
site-packages, recorded in the wheel's RECORD so ``pip uninstall`` removes it too.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
SHIPPED = ("fai-default.onnx", "fai-parser.onnx")


class BuildWithModelAndHook(build_py):
    def run(self) -> None:
        super().run()
        if self.editable_mode:  # an editable install reads models/ in place; make writes the hook
            return
        from fai_infer.harness.telemetry_hook import PTH_LINE, PTH_NAME

        build = Path(self.build_lib)
        for name in SHIPPED:
            target = build / "fai_infer" / "models" / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(HERE / "models" / name, target)
        (build / PTH_NAME).write_text(PTH_LINE)


setup(cmdclass={"build_py": BuildWithModelAndHook})
