"""Every ``--help`` text reaches the user whole: Rich renders help as markup, so ``[default: x]`` or
``[env VAR]`` in a help string would vanish from the screen (leaving "… files ." behind)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import typer

from fakelens.cli.main import app

# Rich's markup tag (rich.markup.RE_TAGS): a "[" not escaped, starting with a lower-case letter, #, / or @
RICH_TAG = re.compile(r"(?<!\\)\[[a-z#/@][^\[]*?\]")


def _commands(cmd: Any, path: str = "fakelens") -> Iterator[tuple[str, Any]]:
    """Every command and sub-command (Typer ships its own click: groups are known by their ``commands``)."""
    yield path, cmd
    for name, sub in getattr(cmd, "commands", {}).items():
        yield from _commands(sub, f"{path} {name}")


def test_no_help_text_is_swallowed_as_rich_markup() -> None:
    swallowed, seen = [], 0
    for path, cmd in _commands(typer.main.get_command(app)):
        texts = [("", cmd.help or "")] + [(p.name or "", getattr(p, "help", None) or "") for p in cmd.params]
        swallowed += [f"{path} {name}: {m.group()}" for name, t in texts for m in RICH_TAG.finditer(t)]
        seen += 1
    assert seen > 15 and not swallowed


def test_python_dash_m_fakelens_is_the_command_line() -> None:
    import subprocess
    import sys

    from fakelens import __version__

    res = subprocess.run(
        [sys.executable, "-m", "fakelens", "--version"], capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0 and res.stdout.strip() == f"fakelens {__version__}", res.stderr


def test_the_command_line_loads_no_heavy_library_before_a_command_runs() -> None:
    """``fakelens --help`` and ``--version`` answer at once: the command modules import torch, timm,
    matplotlib, OpenCV, SciPy, FastAPI and pyarrow inside the commands, not when the CLI is built."""
    import subprocess
    import sys

    heavy = ("torch", "timm", "matplotlib", "cv2", "scipy", "fastapi", "pyarrow")
    code = f"import sys, fakelens.cli.main; print(sorted(m for m in {heavy!r} if m in sys.modules))"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]", f"imported by fakelens.cli.main: {res.stdout.strip()}"


def test_a_closed_stdout_is_no_traceback() -> None:
    """Started with stdout closed (``>&-``, a cron job): the answer goes nowhere, as print() does — it had
    been an AttributeError traceback ('NoneType' object has no attribute 'isatty' / 'write')."""
    import shlex
    import subprocess
    import sys

    cmd = f"{shlex.quote(sys.executable)} -m fakelens models --json >&-"
    res = subprocess.run(["sh", "-c", cmd], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr
