"""A rollout of the webhook under load through a Service-like address: no create fails (the 1.34.4 helm
upgrade's `failed calling webhook ...: EOF`). The scenario, and how it differs from a cluster:
tests/support/drain_probe.py.

It runs in a network namespace of its own (`unshare -n`, as root like tests/cluster) so that its iptables
DNAT rule, kube-proxy's mechanism for a ClusterIP, touches nothing outside; it starts its own control plane
there. Without `Connection: close` on the answers sent while draining (commit 1cd988e), the apiserver kept
writing reviews on its pooled connections to the old Pod, and those cut when its port closed failed with EOF:
3 to 7 failed creates in each of three runs of this scenario (0 in 7 runs with it).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _tools() -> None:
    """iptables and ip (Debian packages iptables, iproute2), installed when missing."""
    missing = [pkg for tool, pkg in (("iptables", "iptables"), ("ip", "iproute2")) if not shutil.which(tool)]
    if missing:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        apt = ["apt-get", "-o", "DPkg::Lock::Timeout=600"]
        subprocess.run([*apt, "update", "-qq"], env=env, check=True, capture_output=True, timeout=600)
        subprocess.run(
            [*apt, "install", "-y", "-qq", "--no-install-recommends", *missing],
            env=env,
            check=True,
            capture_output=True,
            timeout=600,
        )


def test_a_rollout_under_load_fails_no_create(tmp_path: Path) -> None:
    _tools()
    script = 'ip link set lo up && exec "$0" -m tests.support.drain_probe "$1"'
    proc = subprocess.run(
        ["unshare", "--net", "--", "bash", "-c", script, sys.executable, str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(proc.stdout.splitlines()[-1])
    assert result["failures"] == [], result
    assert result["old_exit"] == 0
    # The scenario is the one that failed: the apiserver still sent reviews to the old Pod after SIGTERM
    # on its pooled connections, while new connections reached the new Pod.
    assert result["old_reviews_after_sigterm"] > 0, result
    assert result["new_reviews"] > 100 and result["creates_during_rollout"] > 100, result
