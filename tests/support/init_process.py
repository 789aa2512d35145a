"""The init container as the kubelet runs it: `python -m initcontainer`, configured by its environment."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from initcontainer import contract
from tests.support.kube import REPO


class Run:
    """One finished run: exit code, stderr (JSON log lines) and the termination message it wrote."""

    def __init__(self, proc: subprocess.CompletedProcess[str], term: Path) -> None:
        self.code = proc.returncode
        self.stderr = proc.stderr
        self.termination = term.read_text() if term.exists() else ""

    @property
    def reason(self) -> dict[str, Any]:
        """The termination message ({} when the run wrote none)."""
        return dict(json.loads(self.termination)) if self.termination else {}

    @property
    def lines(self) -> list[dict[str, Any]]:
        """The JSON log lines of stderr."""
        return [json.loads(line) for line in self.stderr.splitlines() if line.startswith("{")]

    def events(self) -> list[str]:
        return [line["event"] for line in self.lines]


def run_init(env: dict[str, str], timeout: float = 60, argv: list[str] | None = None) -> Run:
    """Run the init program with exactly `env`, after removing a termination log a previous run left."""
    term = Path(env.get(contract.ENV_TERMINATION_LOG, "/nonexistent"))
    term.unlink(missing_ok=True)
    proc = subprocess.run(
        argv or [sys.executable, "-m", "initcontainer"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return Run(proc, term)
