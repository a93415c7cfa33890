"""Run a test script in a subprocess that sees several CPU devices.

JAX fixes its device count when it starts, so a test of multi-device code runs its script
in a fresh interpreter with ``--xla_force_host_platform_device_count`` (see DESIGN.md §8),
on the CPU, with the repository on the path.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_on_cpu_devices(
    script: str, devices: int = 2, *, timeout: float = 600, python_flags: tuple[str, ...] = ()
) -> subprocess.CompletedProcess:
    """``python -c script`` with ``devices`` CPU devices, from the repository root; its
    output is captured as text and its exit status is left to the caller."""
    env = {
        **os.environ,
        "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
        "JAX_PLATFORMS": "cpu",
        "PYTHONPATH": str(ROOT),
    }
    return subprocess.run(
        [sys.executable, *python_flags, "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
