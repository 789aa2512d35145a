"""Run `scripts/release.sh` the way a maintainer does: from a clean commit of this tree.

The release refuses a dirty work tree, so the tests release from a throwaway git repository holding the
current files (tracked and untracked, minus ignored ones), committed. The wheelhouse under build/ (ignored
by git, so the copy stays clean) is copied too, so the image build needs no index.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GIT_ENV = {
    "GIT_AUTHOR_NAME": "release test",
    "GIT_AUTHOR_EMAIL": "release@test.invalid",
    "GIT_COMMITTER_NAME": "release test",
    "GIT_COMMITTER_EMAIL": "release@test.invalid",
}


def helm_binary() -> str:
    """helm v4 of scripts/cluster-assets.sh (built once per machine, cached)."""
    out = subprocess.run(
        ["bash", str(ROOT / "scripts" / "cluster-assets.sh"), "helm"],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout.strip().splitlines()[-1]


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args],
        env={**os.environ, **GIT_ENV},
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def release_tree(dest: Path) -> Path:
    """A git repository at `dest` whose one commit is this checkout's current files."""
    files = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "-z", "-co", "--exclude-standard"],
        check=True,
        capture_output=True,
    ).stdout.split(b"\0")
    for name in filter(None, (f.decode() for f in files)):
        src = ROOT / name
        if not src.exists():  # deleted but not yet committed
            continue
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target, follow_symlinks=False)
    if (ROOT / "build" / "wheelhouse").is_dir():
        shutil.copytree(ROOT / "build" / "wheelhouse", dest / "build" / "wheelhouse", symlinks=True)
    git(dest, "init", "-q", "-b", "main")
    git(dest, "add", "-A")
    git(dest, "commit", "-q", "-m", "release test")
    return dest


@dataclass(frozen=True)
class Published:
    chart: str  # oci://REGISTRY/charts/package-injector (no tag)
    chart_digest: str
    webhook: str  # REGISTRY/package-injector@sha256:...
    init: str


def run_release(tree: Path, env: dict[str, str], timeout: float = 1800) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "scripts/release.sh"], cwd=tree, env=env, capture_output=True, text=True, timeout=timeout
    )


def published(stdout: str) -> Published:
    """The three lines release.sh prints last: `chart REF@DIGEST`, `image REF@DIGEST` twice."""
    lines = dict(line.split(" ", 1) for line in stdout.strip().splitlines()[-3:] if line.startswith("chart "))
    images = [line.split(" ", 1)[1] for line in stdout.strip().splitlines()[-2:]]
    chart, chart_digest = lines["chart"].rsplit("@", 1)
    return Published(
        chart=chart.rsplit(":", 1)[0],
        chart_digest=chart_digest,
        webhook=_pin(images[0]),
        init=_pin(images[1]),
    )


def _pin(ref: str) -> str:
    """REGISTRY/NAME:TAG@sha256:... -> REGISTRY/NAME@sha256:..."""
    name_tag, digest = ref.rsplit("@", 1)
    return f"{name_tag.rsplit(':', 1)[0]}@{digest}"
