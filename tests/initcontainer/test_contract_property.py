"""One contract, enforced once: whatever the webhook admits, the init container's configuration check accepts.

Annotations x settings are drawn at random (hypothesis) from values near every rule's edges: URLs with
non-ASCII, control characters, credentials, bad ports and brackets; oci:// references and s3:// URLs on
both sides of their grammars; digests in every spelling; strip values
that int() would take but the contract does not; every tunable of init_env and the proxies with good and bad
values. When the settings load and `inject` admits the Pod, the init container's `load_config` must accept
exactly the environment the webhook rendered, after the kubelet's `$(VAR)`/`$$` handling (the stand-in in
tests/support/kubelet_env.py). The one difference from a cluster: the package-secret Secret is a
directory here, where the kubelet would mount it.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from initcontainer import contract
from initcontainer.config import load_config
from initcontainer.errors import ConfigError
from initcontainer.several import load_all
from tests.support.kubelet_env import container_env
from webhook.inject import Denied, inject
from webhook.settings import Settings

HEX = "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae"

schemes = st.sampled_from(["https", "http", "HTTPS", "ftp", ""])
hosts = st.sampled_from(
    [
        "files.example.com",
        "files.example.com:8443",
        "files.example.com:99999",
        "files.example.com:0",
        "[::1]",
        "[::1",
        "user:pw@files.example.com",
        "hö.example.com",
        "",
        "127.0.0.1",
    ]
)
paths = st.text(
    alphabet=st.sampled_from([*"abz/.-_%~$()", "ä", " ", "\t", "\x00", "\x7f", "?", "#", "\u200b"]),
    max_size=12,
)
http_urls = st.builds(lambda s, h, p: f"{s}://{h}/{p}", schemes, hosts, paths)
oci_urls = st.sampled_from(
    [
        "oci://ghcr.io/org/app:1.0",
        "oci://nginx",
        "OCI://ghcr.io/org/app:v1",
        "oci://registry.example.com:5000/team/app",
        "oci://Registry.example.com:5000/Team/App",
        f"oci://localhost:5000/app@sha256:{HEX}",
        f"oci://ghcr.io/app:1@sha256:{HEX}",
        f"oci://ghcr.io/app@sha256:{HEX[:-1]}",
        "oci://ghcr.io/app:-x",
        "oci://host.example.com:5000",
        "oci://[::1]:5000/app:v1",
        "oci://[::1:5000/app:v1",
        "oci://ghcr.io:99999/app",
        "oci://ghcr.io/app?x=1",
        "oci://user:pw@ghcr.io/app",
        "oci://ghcr.io/äpp",
        "oci://",
    ]
)
s3_urls = st.sampled_from(
    [
        "s3://packages/app.tgz",
        "S3://packages/app.tgz",
        "s3://my.bucket/a/b%20c.tgz",
        "s3://Packages/app.tgz",
        "s3://ab/app.tgz",
        "s3://packages/",
        "s3://packages/dir/",
        "s3://packages:9000/app.tgz",
        "s3://user@packages/app.tgz",
        "s3://packages/app.tgz?versionId=1",
        "s3://packages/a/../b.tgz",
        "s3://192.168.1.1/app.tgz",
        "s3://packages/ä.tgz",
        "s3://packages/%ff.tgz",
        "s3://packages/%0a.tgz",
        "s3://xn--packages/app.tgz",
        "s3://packages",
    ]
)
urls = st.builds(
    lambda u, pad: f"{pad}{u}{pad}", st.one_of(http_urls, oci_urls, s3_urls), st.sampled_from(["", " ", "\n"])
)
digests = st.sampled_from(
    [
        HEX,
        HEX.upper(),
        f"sha256:{HEX}",
        f"SHA256:{HEX}",
        f" {HEX}\n",
        HEX[:-1],
        f"md5:{HEX}",
        "",
        "x" * 64,
        "٣" * 64,
    ]
)
strips = st.sampled_from(["0", "1", "32", "33", "-1", "+3", "٣", "1_0", " 4 ", "x", ""])

TUNABLE_VALUES: dict[str, list[str]] = {
    contract.ENV_FORMAT: ["auto", "tar", "TAR", "zip", "rar", ""],
    contract.ENV_LOG_FORMAT: ["json", "text", "xml", " Text "],
    contract.ENV_MAX_DOWNLOAD_BYTES: ["1Gi", "10", "0", "lots", "1.5G", "٣", "2 Mi"],
    contract.ENV_MAX_EXTRACTED_BYTES: ["16Gi", "1k", "-1"],
    contract.ENV_MAX_FILES: ["200000", "0", "1e5"],
    contract.ENV_CONNECT_TIMEOUT: ["10", "2m", "0", "soon", "1.5s", "1h30m"],
    contract.ENV_READ_TIMEOUT: ["30", "0.5", "-3"],
    contract.ENV_TOTAL_TIMEOUT: ["1800", "1h"],
    contract.ENV_RETRIES: ["0", "5", "100", "101", "lots", "+3", "1_0", "٣"],
    contract.ENV_TERMINATION_LOG: ["/tmp/term", "/dev/termination-log", "/tmp/$(HOME)/t", "/tmp/$$x"],
}
PROXY_VALUES = [
    "http://proxy.corp:3128",
    "proxy.corp:3128",
    "https://proxy.corp",
    "socks5://p:1080",
    "http://",
    "http://p:99999",
]

init_envs = st.dictionaries(st.sampled_from(sorted(TUNABLE_VALUES)), st.none(), max_size=4).flatmap(
    lambda keys: st.fixed_dictionaries({k: st.sampled_from(TUNABLE_VALUES[k]) for k in keys})
)
proxy_envs = st.dictionaries(
    st.sampled_from(["HTTPS_PROXY", "http_proxy", "NO_PROXY"]), st.sampled_from(PROXY_VALUES), max_size=2
)
annotation_sets = st.fixed_dictionaries(
    {"package-url": urls},
    optional={
        "package-sha256": digests,
        "package-strip-components": strips,
        "package-secret": st.sampled_from(["repo-creds", "Repo_Creds", "ns/creds"]),
    },
)
settings_values = st.fixed_dictionaries(
    {
        "allowed_schemes": st.sampled_from(
            [["https"], ["https", "http"], ["http"], ["https", "oci", "s3"], ["http", "oci", "s3"]]
        ),
        "init_env": init_envs,
        "init_proxy_env": proxy_envs,
    },
    optional={
        "s3_endpoint": st.sampled_from(["https://minio.example.com:9000", "http://minio.example.com:9000"]),
        "plain_http_registries": st.sampled_from([["registry.example.com"], ["*.example.com"]]),
    },
)


def pod(annotations: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "app", "annotations": annotations},
        "spec": {"containers": [{"name": "app", "image": "app:1"}]},
    }


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow]
)
@given(annotations=annotation_sets, values=settings_values)
def test_what_the_webhook_admits_the_init_container_accepts(
    annotations: dict[str, str], values: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> None:
    try:
        cluster_settings = Settings(**values)
    except ValidationError:
        assume(False)  # the webhook refuses to start with these settings: no Pod is ever injected
        return
    try:
        result = inject(pod(annotations), cluster_settings, "default")
    except Denied:
        assume(False)  # denied at admission: the user is told, no Pod fails later
        return
    (init,) = [c for c in result.pod["spec"]["initContainers"] if c["name"] == contract.INIT_CONTAINER_NAME]
    env = container_env(init)  # what the process sees after the kubelet's $(VAR) / $$ handling
    if contract.ENV_CREDENTIALS_DIR in env:
        # Where the kubelet mounts the Secret: a directory holding a token.
        secret_dir = tmp_path_factory.mktemp("secret")
        if env[contract.ENV_URL][:5].lower() == "s3://":  # an S3 Secret holds an access key
            (secret_dir / "AWS_ACCESS_KEY_ID").write_text("AKIAEXAMPLE\n")
            (secret_dir / "AWS_SECRET_ACCESS_KEY").write_text("s3cret\n")
        else:
            (secret_dir / contract.CREDENTIAL_TOKEN).write_text("t0ken\n")
        env[contract.ENV_CREDENTIALS_DIR] = str(secret_dir)
    try:
        load_config(env)
    except ConfigError as exc:
        pytest.fail(f"admitted {annotations} with {values}, but the init container refuses it: {exc.message}")


package_names = st.sampled_from(["tools", "Tools", "a", "my.pkg_v2-x", "x" * 38, "x" * 39, "-bad", "a/b", ""])
# Mostly admissible URLs: with several packages, one bad value denies the whole Pod.
good_urls = st.sampled_from(
    [
        "https://files.example.com/a.tgz",
        "https://files.example.com/p%C3%A4.tgz?sig=$(X)&x=$$",
        "http://mirror.local/a.tgz",
        "s3://packages/app.tgz",
        "oci://ghcr.io/org/app:1.0",
        f"oci://ghcr.io/app@sha256:{HEX}",
    ]
)
named_packages = st.dictionaries(
    package_names,
    st.fixed_dictionaries(
        {"package-url": st.one_of(good_urls, good_urls, good_urls, urls)},
        optional={
            "package-sha256": digests,
            "package-strip-components": strips,
            "package-secret": st.sampled_from(["repo-creds", "Repo_Creds"]),
            "package-mount-path": st.sampled_from(["/opt/a", "/opt/a/b", "/shared-data/packages", "etc"]),
        },
    ),
    min_size=1,
    max_size=3,
)


def _secret_dir(url: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """Where the kubelet mounts a Secret: a directory holding a token (for s3://, an access key)."""
    secret_dir = tmp_path_factory.mktemp("secret")
    if url[:5].lower() == "s3://":
        (secret_dir / "AWS_ACCESS_KEY_ID").write_text("AKIAEXAMPLE\n")
        (secret_dir / "AWS_SECRET_ACCESS_KEY").write_text("s3cret\n")
    else:
        (secret_dir / contract.CREDENTIAL_TOKEN).write_text("t0ken\n")
    return str(secret_dir)


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow]
)
@given(unnamed=st.none() | annotation_sets, named=named_packages, values=settings_values)
def test_what_the_webhook_admits_with_named_packages_the_init_container_accepts(
    unnamed: dict[str, str] | None,
    named: dict[str, dict[str, str]],
    values: dict[str, Any],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """The same contract for PACKAGE_LIST: every package's entry, after the kubelet's env handling, passes
    the init container's `load_all` (the list's own rules, then `load_config` for each package)."""
    annotations = dict(unnamed or {})
    for name, keys in named.items():
        annotations.update({f"{key}.{name}": value for key, value in keys.items()})
    try:
        cluster_settings = Settings(**values)
        result = inject(pod(annotations), cluster_settings, "default")
    except (ValidationError, Denied):
        assume(False)
        return
    (init,) = [c for c in result.pod["spec"]["initContainers"] if c["name"] == contract.INIT_CONTAINER_NAME]
    env = container_env(init)
    if contract.ENV_CREDENTIALS_DIR in env:
        env[contract.ENV_CREDENTIALS_DIR] = _secret_dir(env[contract.ENV_URL], tmp_path_factory)
    entries = json.loads(env[contract.ENV_PACKAGE_LIST])
    for entry in entries:
        if "credentialsDir" in entry:
            entry["credentialsDir"] = _secret_dir(entry["url"], tmp_path_factory)
    env[contract.ENV_PACKAGE_LIST] = json.dumps(entries)
    try:
        configs, _ = load_all(env)
    except ConfigError as exc:
        pytest.fail(f"admitted {annotations} with {values}, but the init container refuses it: {exc.message}")
    assert len(configs) == len(entries) + (contract.ENV_URL in env)


@pytest.mark.parametrize(
    ("annotations", "values"),
    [
        ({"package-url": "https://example.com/päckage.tgz"}, {}),
        ({"package-url": "https://files.example.com/a.tgz"}, {"init_env": {contract.ENV_RETRIES: "lots"}}),
        (
            {"package-url": "https://files.example.com/a.tgz"},
            {"init_proxy_env": {"HTTPS_PROXY": "https://p"}},
        ),
        ({"package-url": "https://[::1/a.tgz"}, {}),
    ],
)
def test_the_cases_the_issue_saw_are_refused_up_front(
    annotations: dict[str, str], values: dict[str, Any]
) -> None:
    """Each was admitted and then failed in every Pod (Init:Error); now the webhook says no first."""
    with pytest.raises((Denied, ValidationError)):
        inject(pod(annotations), Settings(**values), "default")


def test_init_env_values_are_checked_by_the_init_containers_own_rule() -> None:
    for name, candidates in TUNABLE_VALUES.items():
        for raw in candidates:
            env = {contract.ENV_URL: "https://files.example.com/a.tgz", name: raw}
            try:
                load_config(env)
                init_ok = True
            except ConfigError:
                init_ok = False
            try:
                Settings(init_env={name: raw})
                webhook_ok = True
            except ValidationError:
                webhook_ok = False
            # Empty means "unset" to the init container; the webhook never renders an empty variable anyway.
            if raw.strip():
                assert webhook_ok == init_ok, (name, raw)
