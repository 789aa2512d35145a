"""`package-injector inject` as users run it: a subprocess, files and stdin, exit codes, stderr."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"


def cli(
    *args: str, stdin: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "webhook", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        env={**os.environ, **(env or {})},
    )


def test_injects_the_example_deployment() -> None:
    result = cli("inject", "-f", str(EXAMPLES / "deployment.yaml"))
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    (deployment,) = yaml.safe_load_all(result.stdout)
    spec = deployment["spec"]["template"]["spec"]
    assert [c["name"] for c in spec["initContainers"]] == ["package-downloader"]
    assert "package-status" in deployment["spec"]["template"]["metadata"]["annotations"]


def test_reads_stdin_and_multiple_documents() -> None:
    text = (EXAMPLES / "pod.yaml").read_text() + "\n---\n" + (EXAMPLES / "deployment.yaml").read_text()
    result = cli("inject", "-f", "-", stdin=text)
    assert result.returncode == 0, result.stderr
    pod, deployment = yaml.safe_load_all(result.stdout)
    assert pod["kind"] == "Pod" and deployment["kind"] == "Deployment"
    assert pod["spec"]["initContainers"][0]["name"] == "package-downloader"


def test_invalid_annotations_exit_1_with_the_webhook_message() -> None:
    result = cli("inject", "-f", str(EXAMPLES / "invalid-pod.yaml"))
    assert result.returncode == 1 and result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines[0] == (
        'warning: Pod/broken: package-injector: annotation "package-stirp-components" is not a '
        'package-injector key and is ignored; did you mean "package-strip-components"?'
    )
    assert lines[1].startswith(
        'error: Pod/broken: package-injector: annotation "package-url": http:// is not'
    )
    assert "secret@" not in result.stderr


def test_warnings_go_to_stderr_output_stays_yaml() -> None:
    text = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, annotations: {package-url: "https://files.example.com/a.tgz"}}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: nginx}]}
"""
    result = cli("inject", "-f", "-", stdin=text)
    assert result.returncode == 0
    assert "move it to spec.template.metadata.annotations" in result.stderr
    (obj,) = yaml.safe_load_all(result.stdout)
    assert "initContainers" not in obj["spec"]["template"]["spec"]


def test_settings_come_from_env_and_config_file(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("init_image: registry.example.com/package-init-container:9.9\n")
    result = cli("inject", "-f", str(EXAMPLES / "pod.yaml"), "--config", str(config))
    (pod,) = yaml.safe_load_all(result.stdout)
    assert pod["spec"]["initContainers"][0]["image"] == "registry.example.com/package-init-container:9.9"
    denied = cli(
        "inject",
        "-f",
        str(EXAMPLES / "pod.yaml"),
        env={"PACKAGE_INJECTOR_ALLOWED_HOSTS": '["other.example.com"]'},
    )
    assert (
        denied.returncode == 1
        and 'host "files.example.com" is not in the cluster allow-list' in denied.stderr
    )


def test_example_config_file_loads() -> None:
    result = cli("inject", "-f", str(EXAMPLES / "deployment.yaml"), "--config", str(EXAMPLES / "config.yaml"))
    assert result.returncode == 0, result.stderr


def test_bad_input_is_a_clear_error(tmp_path: Path) -> None:
    missing = cli("inject", "-f", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 2 and "cannot read" in missing.stderr and "Traceback" not in missing.stderr
    broken = cli("inject", "-f", "-", stdin="a: [b\n")
    assert broken.returncode == 2 and "not valid YAML" in broken.stderr
    bad_settings = cli("inject", "-f", "-", stdin="{}", env={"PACKAGE_INJECTOR_MAX_SIZE_LIMIT": "huge"})
    assert (
        bad_settings.returncode == 2
        and "invalid settings: PACKAGE_INJECTOR_MAX_SIZE_LIMIT: 'huge' is not" in bad_settings.stderr
    )
    assert "Traceback" not in bad_settings.stderr


def test_help_lists_the_subcommands() -> None:
    result = cli("--help")
    assert result.returncode == 0
    for command in ("serve", "inject", "certs", "check", "explain"):
        assert command in result.stdout


def test_an_injected_manifest_without_package_url_is_cleaned() -> None:
    """GitOps: the injected Deployment was committed, then package-url was deleted from it."""
    injected = cli("inject", "-f", str(EXAMPLES / "deployment.yaml"))
    assert injected.returncode == 0, injected.stderr
    (deployment,) = yaml.safe_load_all(injected.stdout)
    del deployment["spec"]["template"]["metadata"]["annotations"]["package-url"]
    result = cli("inject", "-f", "-", stdin=yaml.safe_dump(deployment))
    assert result.returncode == 0, result.stderr
    assert "removed what it injected before" in result.stderr
    (cleaned,) = yaml.safe_load_all(result.stdout)
    template = cleaned["spec"]["template"]
    assert "package-status" not in template["metadata"]["annotations"]
    assert "initContainers" not in template["spec"]
    assert all(v["name"] != "package-shared-volume" for v in template["spec"].get("volumes", []))
    for container in template["spec"]["containers"]:
        assert all(m["name"] != "package-shared-volume" for m in container.get("volumeMounts", []))


POD_HEAD = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  annotations:\n"
CONTAINERS = "spec: {containers: [{name: a, image: x}]}\n"


def _alias_bomb() -> str:
    lines = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        name, previous = chr(97 + i), chr(96 + i)
        lines.append(f"{name}: &{name} [{', '.join(['*' + previous] * 10)}]")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    ("manifest", "code", "message"),
    [
        (POD_HEAD + "    package-url: 'https://[::1/a.tgz'\n" + CONTAINERS, 1, "is not a valid URL"),
        (POD_HEAD + '    package-url: "https://a/\\ud800"\n' + CONTAINERS, 2, "lone UTF-16 surrogate"),
        (
            POD_HEAD + "    package-url: https://a/x.tgz\nspec: {containers: [{name: [a]}]}\n",
            1,
            "must be a string",
        ),
        (
            POD_HEAD + "    package-url: https://a/x.tgz\nspec: {containers: [{name: a, env: 5}]}\n",
            1,
            "env must be a list of objects",
        ),
        (
            POD_HEAD
            + "    package-url: https://a/x.tgz\n    package-status: '"
            + "[" * 3000
            + "]" * 3000
            + "'\n"
            + CONTAINERS,
            0,
            "",
        ),
        ("a: " + "[" * 900 + "]" * 900 + "\n", 2, "nested too deeply"),
        ("a: " + "[" * 150 + "]" * 150 + "\n", 2, "nested more than 100 levels"),
        (POD_HEAD + "    package-url: https://a/x.tgz\nspec: {containers: [{name: a, x: .nan}]}\n", 2, "NaN"),
        (_alias_bomb(), 2, "holds more than"),
        ("a: 2020-13-45\n", 2, "not valid YAML"),
    ],
    ids=[
        "bad-ipv6",
        "surrogate",
        "name-type",
        "env-type",
        "deep-status",
        "deep-900",
        "deep-150",
        "nan",
        "alias-bomb",
        "bad-date",
    ],
)
def test_malformed_input_is_a_clear_error(manifest: str, code: int, message: str) -> None:
    result = cli("inject", "-f", "-", stdin=manifest)
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    assert message in result.stderr
    if code:
        assert result.stderr.startswith("error: ") and result.stdout == ""


def test_undecodable_input_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "pod.yaml"
    path.write_bytes(b"a: \xff\xfe\n")
    result = cli("inject", "-f", str(path))
    assert result.returncode == 2 and "not UTF-8 text" in result.stderr and "Traceback" not in result.stderr
    piped = subprocess.run(
        [sys.executable, "-m", "webhook", "inject", "-f", "-"],
        input=b"a: \xff\xfe\n",
        capture_output=True,
        cwd=REPO,
    )
    assert piped.returncode == 2 and b"<stdin>: not UTF-8 text" in piped.stderr


def test_several_files_and_a_directory_like_kubectl(tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "b.yaml").write_text((EXAMPLES / "pod.yaml").read_text())
    (tmp_path / "dir" / "README.md").write_text("not a manifest")
    result = cli("inject", "-f", str(EXAMPLES / "deployment.yaml"), "-f", str(tmp_path / "dir"))
    assert result.returncode == 0, result.stderr
    kinds = [d["kind"] for d in yaml.safe_load_all(result.stdout)]
    assert kinds == ["Deployment", "Pod"]
    assert result.stdout.startswith("---\n")


def test_comments_quoting_and_block_scalars_are_kept() -> None:
    text = """# the shop's pod; reviewed by platform
apiVersion: v1
kind: Pod
metadata:
  name: shop  # same name as the Service
  annotations:
    package-url: "https://files.example.com/shop.tar.gz"
spec:
  containers:
    - name: shop
      image: shop:1
      args: [--config, /app/config]
      command:
        - sh
        - -c
        - |
          echo starting
          exec shop
"""
    result = cli("inject", "-f", "-", stdin=text)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    # Everything the user wrote is still there, byte for byte, in order; only the injection is added.
    kept = [line for line in out.splitlines() if line in text.splitlines()]
    assert kept == text.splitlines()
    added = [line for line in out.splitlines() if line not in text.splitlines()]
    assert any("package-downloader" in line for line in added)
    assert "    - name: package-downloader" in out  # the file's own sequence indentation


@pytest.mark.parametrize(
    "argv",
    [
        ["inject", "-f", str(EXAMPLES / "deployment.yaml")],
        ["certs", "--service", "pi", "--namespace", "ns", "--out-dir", "{tmp}"],
    ],
)
def test_a_closed_pipe_ends_quietly(tmp_path: Path, argv: list[str]) -> None:
    """`inject ... | head`: the reader is gone. Its end of the pipe is closed before the command starts,
    so the first write fails, every time."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        result = subprocess.run(
            [sys.executable, "-m", "webhook", *[a.replace("{tmp}", str(tmp_path)) for a in argv]],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            cwd=REPO,
        )
    finally:
        os.close(write_end)
    assert "Traceback" not in result.stderr and "BrokenPipeError" not in result.stderr, result.stderr
    assert result.returncode == 141
