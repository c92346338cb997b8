"""Shared by the benchmark scripts (run as ``python benchmarks/NAME.py``, so this folder is on ``sys.path``).

* argparse types that refuse bad values at the start, not after (or in the middle of) a long run:
  :func:`positive_int`, :func:`non_negative_int`, :func:`int_range`, :func:`positive_float`,
  :func:`comma_list`, :func:`device` (``cpu``, ``cuda`` or ``cuda:N``, and only a CUDA device that is
  there) and :func:`output_path` (creates the output's folder and checks that a file can be written there);
* :func:`write_json`: the results written atomically (a temporary file in the same folder, then
  ``os.replace``), so an interrupted or failed write never leaves half a file;
* :func:`environment`: the machine, the versions, the thread count and the command line of a run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fakelens.io import atomic_write_text

if TYPE_CHECKING:
    import torch


def _int_between(text: str, low: int, high: int | None = None) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < low or (high is not None and value > high):
        allowed = f"at least {low}" if high is None else f"{low} to {high}"
        raise argparse.ArgumentTypeError(f"{value} is not allowed: {allowed}")
    return value


def positive_int(text: str) -> int:
    """argparse type: a whole number ≥ 1 (a count, a size, a number of rounds)."""
    return _int_between(text, 1)


def non_negative_int(text: str) -> int:
    """argparse type: a whole number ≥ 0 (where 0 means "none" or "skip")."""
    return _int_between(text, 0)


def int_range(low: int, high: int) -> Callable[[str], int]:
    """argparse type: a whole number from ``low`` to ``high`` (both included)."""
    return lambda text: _int_between(text, low, high)


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text} is not allowed: a finite number > 0")
    return value


def comma_list(item: Callable[[str], Any] | Iterable[str]) -> Callable[[str], list[Any]]:
    """argparse type: a comma list, each item checked by ``item`` (an argparse type such as
    :func:`positive_int`) or one of the names ``item``; an empty list is refused."""
    if callable(item):
        check = item
    else:
        known = list(item)

        def check(name: str) -> str:
            if name not in known:
                raise argparse.ArgumentTypeError(f"unknown name {name!r} (known: {', '.join(known)})")
            return name

    def parse(text: str) -> list[Any]:
        items = [s.strip() for s in text.split(",") if s.strip()]
        if not items:
            raise argparse.ArgumentTypeError("an empty list")
        return [check(s) for s in items]

    return parse


def device(text: str) -> torch.device:
    """argparse type: ``cpu``, ``cuda`` or ``cuda:N``; a CUDA device must be there."""
    import torch

    try:
        dev = torch.device(text)
    except (RuntimeError, ValueError):
        raise argparse.ArgumentTypeError(f"{text!r} is not a device: cpu, cuda or cuda:N") from None
    if dev.type not in ("cpu", "cuda"):
        raise argparse.ArgumentTypeError(f"{text!r}: only cpu, cuda or cuda:N")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise argparse.ArgumentTypeError(f"{text}: no CUDA device is available")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise argparse.ArgumentTypeError(f"{text}: there are {torch.cuda.device_count()} CUDA devices")
    return dev


def output_path(text: str) -> Path:
    """argparse type for a results file: its folder is created now, before any work, and must take a file
    (a folder that cannot be made or written is an argument error, not a traceback after the run)."""
    path = Path(text).expanduser()
    if text == "" or path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is a folder, not a file")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path.parent):
            pass
    except OSError as e:
        raise argparse.ArgumentTypeError(f"cannot write {text}: {e.strerror or e}") from None
    return path


def write_json(path: str | os.PathLike[str], obj: Any, *, indent: int = 1) -> Path:
    """``obj`` as JSON (values JSON has no type for as ``str``), written atomically to ``path``. When the
    write fails, the JSON goes to stdout before the error is raised, so that the results are not lost."""
    text = json.dumps(obj, indent=indent, default=str) + "\n"
    try:
        return atomic_write_text(path, text)
    except OSError as e:
        print(f"could not write {path} ({e}); the results:", file=sys.stderr, flush=True)
        print(text, flush=True)
        raise


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def environment(device: torch.device) -> dict[str, Any]:
    """Where and how a benchmark ran: the device (GPU name or CPU model), CPU, cores, torch threads, the
    Python, torch, torchvision, timm, pytorch-grad-cam and torchcam versions (``None``: not installed), the
    commit, the command line and the load average at the start."""
    import torch

    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=False,
            cwd=Path(__file__).resolve().parent,
        ).stdout.strip()
    except OSError:
        commit = ""
    cpu = _cpu_name()
    return {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu,
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": _version("torchvision"),
        "timm": _version("timm"),
        "grad_cam": _version("grad-cam"),
        "torchcam": _version("torchcam"),
        "commit": commit,
        "command": " ".join([os.path.basename(sys.executable), *sys.argv]),
        "loadavg_start": list(os.getloadavg()),
    }
