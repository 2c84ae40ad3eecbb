"""A benchmark report: where it ran, the process's own CPU time, and its JSON output."""

from __future__ import annotations

import json
import os
import platform
import resource
import sys
from pathlib import Path
from typing import Any


def describe() -> dict[str, Any]:
    """Cores, CPU model, Python, and the load when the run started (shared machines are noisy)."""
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = next(
        (line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if "model name" in line),
        platform.processor(),
    )
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "python": sys.version.split()[0],
        "load_average_at_start": os.getloadavg(),
    }


def cpu_seconds() -> float:
    """User + system CPU seconds of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def emit(report: dict[str, Any], output: Path | None) -> None:
    """The report as JSON on stdout, and in ``output`` when given."""
    text = json.dumps(report, indent=2)
    sys.stdout.write(text + "\n")
    if output is not None:
        output.write_text(text + "\n")
