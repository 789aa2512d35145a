"""`make release` (scripts/release.sh): what it refuses, and a real release to Debian's docker-registry on
127.0.0.1 installed back from it with a real helm (`helm pull` / `helm template` of oci://).

Differs from a production release in one way: the registry speaks plain HTTP on loopback (PLAIN_HTTP=1,
which the engine allows for 127.0.0.0/8 without configuration); a real registry speaks TLS.
"""

from __future__ import annotations

import json
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.images.conftest import Engine, Images
from tests.support.release import Published, git, helm_binary, published, release_tree, run_release

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parents[2]
VERSION = "0.1.0"  # the version of this tree; CHANGELOG.md has its entry
MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    ]
)


@pytest.fixture(scope="module")
def helm() -> str:
    return helm_binary()


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return release_tree(tmp_path / "src")


def refused(tree: Path, **env: str) -> str:
    """Run the release with `env`; it must refuse (exit 2) before building or pushing anything."""
    base = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(tree.parent), "REGISTRY": "127.0.0.1:9/x"}
    proc = run_release(tree, {**base, **env}, timeout=120)
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-3000:])
    assert not (tree / "build" / "release").exists()
    return proc.stderr


def test_refuses_without_version_or_changelog_entry(tree: Path) -> None:
    assert "set VERSION, e.g. make release VERSION=" in refused(tree)
    assert "not a semantic version" in refused(tree, VERSION="v0.1.0")
    for version in ("0.1.0-01", "0.1.0-a..b", "0.1.0-", "0.1.0-rc.1;id"):  # helm would refuse the first two
        assert f"VERSION={version} is not a semantic version" in refused(tree, VERSION=version)
    message = refused(tree, VERSION="0.2.0")
    assert "CHANGELOG.md has no entry for 0.2.0: add '## [0.2.0] - " in message
    # A heading without a line of content is no entry either.
    changelog = tree / "CHANGELOG.md"
    changelog.write_text(
        changelog.read_text().replace("## [Unreleased]", "## [Unreleased]\n\n## [0.2.0] - 2027-01-01\n")
    )
    git(tree, "commit", "-qam", "empty entry")
    assert "CHANGELOG.md has no entry for 0.2.0" in refused(tree, VERSION="0.2.0")


def test_refuses_a_version_the_tree_does_not_carry(tree: Path) -> None:
    changelog = tree / "CHANGELOG.md"
    changelog.write_text(
        changelog.read_text().replace(
            "## [Unreleased]", "## [Unreleased]\n\n## [0.2.0] - 2027-01-01\n\n- x\n"
        )
    )
    git(tree, "commit", "-qam", "entry")
    message = refused(tree, VERSION="0.2.0")
    assert f"pyproject.toml version is {VERSION}, not 0.2.0: set version in pyproject.toml" in message


def test_refuses_a_dirty_tree_and_a_bad_registry(tree: Path) -> None:
    assert "REGISTRY=HTTPS://Reg is not a registry path" in refused(
        tree, VERSION=VERSION, REGISTRY="HTTPS://Reg"
    )
    (tree / "README.md").write_text((tree / "README.md").read_text() + "\nlocal edit\n")
    assert "uncommitted changes (see git status)" in refused(tree, VERSION=VERSION)
    git(tree, "checkout", "README.md")
    (tree / "notes.txt").write_text("untracked counts too\n")
    assert "uncommitted changes" in refused(tree, VERSION=VERSION)


@pytest.mark.parametrize("mark", ["--skip-worktree", "--assume-unchanged"])
def test_refuses_an_edit_hidden_from_git_status(tree: Path, mark: str) -> None:
    """A tracked file marked so git status skips it would be built, edited, into the released images."""
    git(tree, "update-index", mark, "webhook/app.py")
    (tree / "webhook" / "app.py").write_text("raise SystemExit('not the commit')\n")
    assert git(tree, "status", "--porcelain") == ""  # the trick: the tree looks clean
    message = refused(tree, VERSION=VERSION)
    assert "assume-unchanged or skip-worktree (webhook/app.py)" in message
    assert "git update-index --no-assume-unchanged --no-skip-worktree FILE" in message


def test_make_release_passes_registry_and_version() -> None:
    out = subprocess.run(
        ["make", "-n", "release", "REGISTRY=r.example/p", "VERSION=1.2.3"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert 'REGISTRY="r.example/p" VERSION="1.2.3" bash scripts/release.sh' in out


def test_chart_default_registry_is_where_releases_go() -> None:
    values = yaml.safe_load((ROOT / "charts" / "package-injector" / "values.yaml").read_text())
    assert values["imageRegistry"] == "ghcr.io/package-injector"
    assert values["image"]["registry"] == values["initContainer"]["image"]["registry"] == ""
    readme = (ROOT / "README.md").read_text()
    assert "helm install package-injector oci://ghcr.io/package-injector/charts/package-injector" in readme


def registry_digest(registry: str, repo: str, tag: str) -> str:
    req = urllib.request.Request(
        f"http://{registry}/v2/{repo}/manifests/{tag}", method="HEAD", headers={"Accept": MANIFEST_TYPES}
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        return str(r.headers["Docker-Content-Digest"])


def release_env(images: Images, registry: str, helm: str, tmp_path: Path) -> dict[str, str]:
    return {
        **images.engine.env,
        "REGISTRY": f"{registry}/platform",
        "VERSION": VERSION,
        "PLAIN_HTTP": "1",
        "BASE_IMAGE": images.base,
        "HELM": helm,
        "HOST_PIP": str(ROOT / ".venv" / "bin" / "pip"),
        # No credentials anywhere: empty docker and helm configs of the test's own.
        "DOCKER_CONFIG": str(tmp_path / "docker-config"),
        "HELM_REGISTRY_CONFIG": str(tmp_path / "helm" / "registry.json"),
        "HELM_CACHE_HOME": str(tmp_path / "helm" / "cache"),
        "HELM_CONFIG_HOME": str(tmp_path / "helm" / "config"),
        "HELM_DATA_HOME": str(tmp_path / "helm" / "data"),
    }


@pytest.fixture
def released(
    images: Images, registry: str, helm: str, tree: Path, tmp_path: Path
) -> Iterator[tuple[Published, dict[str, str]]]:
    env = release_env(images, registry, helm, tmp_path)
    proc = run_release(tree, env)
    assert proc.returncode == 0, proc.stderr[-6000:]
    pub = published(proc.stdout)
    yield pub, env
    for ref in (
        f"{registry}/platform/package-injector:{VERSION}",
        f"{registry}/platform/package-init-container:{VERSION}",
    ):
        images.engine.run("rmi", ref, check=False)


def test_release_to_a_registry_and_install_from_it(
    released: tuple[Published, dict[str, str]],
    registry: str,
    helm: str,
    tree: Path,
    tmp_path: Path,
    engine: Engine,
) -> None:
    pub, env = released
    prefix = f"{registry}/platform"
    assert pub.chart == f"oci://{prefix}/charts/package-injector"
    # The digests in the chart are the registry's own for the pushed tags.
    for name, ref in (("package-injector", pub.webhook), ("package-init-container", pub.init)):
        assert ref == f"{prefix}/{name}@{registry_digest(registry, f'platform/{name}', VERSION)}"
    assert pub.chart_digest == registry_digest(registry, "platform/charts/package-injector", VERSION)
    # The release came from a clean commit and left it clean (build/ is ignored).
    assert git(tree, "status", "--porcelain") == ""

    def run_helm(*args: str) -> str:
        proc = subprocess.run([helm, *args], env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, (args, proc.stderr[-3000:])
        return proc.stdout

    # helm pull of the OCI artifact: the published chart pins both images by digest.
    (tmp_path / "pulled").mkdir()
    run_helm("pull", pub.chart, "--version", VERSION, "--plain-http", "-d", str(tmp_path / "pulled"))
    (tgz,) = (tmp_path / "pulled").glob("package-injector-*.tgz")
    assert tgz.name == f"package-injector-{VERSION}.tgz"
    for source in (str(tgz), pub.chart):
        extra = ["--version", VERSION, "--plain-http"] if source.startswith("oci://") else []
        docs = [d for d in yaml.safe_load_all(run_helm("template", "package-injector", source, *extra)) if d]
        (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert container["image"] == pub.webhook
        env_vars = {e["name"]: e.get("value") for e in container["env"]}
        assert env_vars["PACKAGE_INJECTOR_INIT_IMAGE"] == pub.init
    values = yaml.safe_load(run_helm("show", "values", str(tgz)))
    assert values["imageRegistry"] == prefix
    assert values["image"]["digest"] == pub.webhook.rsplit("@", 1)[1]
    assert "# -- Registry path of both images" in run_helm("show", "values", str(tgz))
    chart_yaml = yaml.safe_load(run_helm("show", "chart", str(tgz)))
    assert (chart_yaml["version"], chart_yaml["appVersion"]) == (VERSION, VERSION)

    # The pinned references pull: drop the local names, pull by digest.
    for ref in (pub.webhook, pub.init):
        engine.run("rmi", ref.split("@")[0] + f":{VERSION}", check=False)
        engine.run("pull", ref, timeout=300)
        labels = json.loads(engine.run("image", "inspect", "-f", "{{json .Config.Labels}}", ref).stdout)
        assert labels.get("org.opencontainers.image.version") == VERSION, labels
        engine.run("rmi", ref)


def test_a_failed_second_push_says_what_was_published_and_what_was_not(
    images: Images, registry: str, helm: str, tree: Path, tmp_path: Path
) -> None:
    """The registry answers 500 for the init image's repository: the webhook image is already pushed.

    The release must fail and name the tag it left in the registry without its chart, and what is missing.
    (The registry fails because its storage path for that repository is a file, not a directory.)
    """
    blocked = tmp_path / "data" / "docker/registry/v2/repositories/platform/package-init-container"
    blocked.parent.mkdir(parents=True, exist_ok=True)
    blocked.write_text("not a directory\n")
    proc = run_release(tree, release_env(images, registry, helm, tmp_path))
    try:
        assert proc.returncode not in (0, 2), proc.stderr[-3000:]
        prefix = f"{registry}/platform"
        pushed = f"{prefix}/package-injector:{VERSION}"
        assert registry_digest(registry, "platform/package-injector", VERSION).startswith("sha256:")
        digest = registry_digest(registry, "platform/package-injector", VERSION)
        assert (
            f"FAILED after publishing {pushed}@{digest}; not published: {prefix}/package-init-container:"
            f"{VERSION} oci://{prefix}/charts/package-injector:{VERSION}. The release is incomplete"
        ) in proc.stderr, proc.stderr[-3000:]
        assert proc.stdout == ""
        assert not (tree / "build" / "release" / VERSION / "published.txt").exists()
    finally:
        for name in ("package-injector", "package-init-container"):
            images.engine.run("rmi", f"{registry}/platform/{name}:{VERSION}", check=False)
