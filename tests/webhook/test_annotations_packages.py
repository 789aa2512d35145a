"""Several packages per Pod: `package-url.NAME` and its companions, their rules, conflicts and warnings."""

from __future__ import annotations

import re

import pytest

from initcontainer import contract
from webhook import annotations as ann
from webhook.annotations import Denied, NamedPackage, parse
from webhook.settings import Settings

URL = "https://files.example.com/site.tar.gz"
TOOLS = "https://files.example.com/tools.tar.gz"
DIGEST = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"


def denial(annotations: dict[str, str], settings: Settings | None = None) -> Denied:
    with pytest.raises(Denied) as info:
        parse(annotations, settings or Settings())
    return info.value


def test_named_packages_with_their_companions_sorted_by_name() -> None:
    parsed = parse(
        {
            "package-url": URL,
            "package-url.tools": TOOLS,
            "package-sha256.tools": "SHA256:" + DIGEST.upper(),
            "package-mount-path.tools": "/opt/tools/",
            "package-containers.tools": "app, sidecar",
            "package-strip-components.tools": "1",
            "package-secret.tools": "tools-reader",
            "package-url.Config.v2_x": URL,
        },
        Settings(),
    )
    # Only the unpinned-package warning, once per unpinned package, under its own keys.
    assert [w.split(":", 2)[1].strip() for w in parsed.warnings] == [
        '"package-url" has no "package-sha256"',
        '"package-url.Config.v2_x" has no "package-sha256.Config.v2_x"',
    ]
    request = parsed.request
    assert request is not None and request.url == URL
    assert request.packages == (
        NamedPackage("Config.v2_x", URL, None, "/shared-data/packages/Config.v2_x", None, 0, None, False),
        NamedPackage("tools", TOOLS, DIGEST, "/opt/tools", ("app", "sidecar"), 1, "tools-reader", False),
    )


def test_only_named_packages_make_a_request_without_an_unnamed_one() -> None:
    request = parse({"package-url.tools": TOOLS, "package-size-limit": "1Gi"}, Settings()).request
    assert request is not None
    assert request.url is None and request.size_limit == "1Gi"
    assert [p.name for p in request.packages] == ["tools"]


def test_the_unnamed_packages_keys_alone_are_unchanged_by_named_ones() -> None:
    alone = parse({"package-url": URL, "package-sha256": DIGEST}, Settings()).request
    both = parse({"package-url": URL, "package-sha256": DIGEST, "package-url.x": TOOLS}, Settings()).request
    assert alone is not None and both is not None
    assert alone.packages == () and alone == both.__class__(**{**vars(both), "packages": ()})


def test_default_paths_never_nest() -> None:
    for name in ("tools", "a", "x" * 38):
        dest = contract.named_dest(name)
        assert not contract.is_inside(dest, contract.DEFAULT_DEST)
        assert not contract.is_inside(contract.DEFAULT_DEST, dest)
        assert not contract.is_inside(contract.named_credentials_dir(name), contract.DEFAULT_CREDENTIALS_DIR)


@pytest.mark.parametrize(
    ("annotations", "key", "fragment"),
    [
        ({"package-url.tools": "ftp://x/a.tgz"}, "package-url.tools", "must be an absolute https://"),
        ({"package-url.tools": TOOLS, "package-sha256.tools": "abc"}, "package-sha256.tools", "64 hex"),
        (
            {"package-url.tools": TOOLS, "package-mount-path.tools": "/etc/tools"},
            "package-mount-path.tools",
            "system path",
        ),
        (
            {"package-url.tools": TOOLS, "package-containers.tools": "App!"},
            "package-containers.tools",
            "not a valid container name",
        ),
        (
            {"package-url.tools": TOOLS, "package-strip-components.tools": "33"},
            "package-strip-components.tools",
            "integer from 0 to 32",
        ),
        (
            {"package-url.tools": TOOLS, "package-secret.tools": "ns/creds"},
            "package-secret.tools",
            "without namespace/",
        ),
        (
            {"package-url.tools": "https://u:p@files.example.com/a.tgz"},
            "package-url.tools",
            'name it in "package-secret.tools"',
        ),
        ({"package-url.-tools": TOOLS}, "package-url.-tools", "starting and ending with a letter or digit"),
        ({"package-url." + "x" * 39: TOOLS}, "package-url." + "x" * 39, "longer than 38 characters"),
        ({"package-url.": TOOLS}, "package-url.", "is empty"),
    ],
)
def test_each_named_key_is_checked_by_the_unnamed_keys_rule(
    annotations: dict[str, str], key: str, fragment: str
) -> None:
    denied = denial(annotations)
    assert f'annotation "{key}": ' in denied.message and fragment in denied.message, denied.message


def test_require_checksum_applies_to_every_package() -> None:
    denied = denial(
        {"package-url": URL, "package-sha256": DIGEST, "package-url.tools": TOOLS},
        Settings(require_checksum=True),
    )
    assert denied.code == 403
    assert 'annotation "package-sha256.tools": is required in this cluster' in denied.message


def test_names_that_would_share_a_volume_are_denied() -> None:
    denied = denial({"package-url.Tools": TOOLS, "package-url.tools": TOOLS, "package-url.to_ols": TOOLS})
    assert (
        'packages "Tools" and "tools" would share the volume "package-shared-volume-tools"' in denied.message
    )
    assert "rename one of them" in denied.message
    assert ann.volume_suffix("to_ols") == "to-ols" and "to_ols" not in denied.message


@pytest.mark.parametrize(
    "annotations",
    [
        {
            "package-url": URL,
            "package-url.tools": TOOLS,
            "package-mount-path.tools": "/shared-data/diff-var-files",
        },
        {
            "package-url": URL,
            "package-url.tools": TOOLS,
            "package-mount-path.tools": "/shared-data/diff-var-files/t",
        },
        {"package-url": URL, "package-mount-path": "/shared-data/packages", "package-url.tools": TOOLS},
        {
            "package-url.a": URL,
            "package-url.b": TOOLS,
            "package-mount-path.a": "/app",
            "package-mount-path.b": "/app",
        },
        {
            "package-url.a": URL,
            "package-url.b": TOOLS,
            "package-mount-path.a": "/app",
            "package-mount-path.b": "/app/b",
            "package-containers.a": "app",
        },
    ],
)
def test_packages_seen_by_one_container_may_not_share_or_nest_their_paths(
    annotations: dict[str, str],
) -> None:
    denied = denial(annotations)
    assert "in the same container; give each package its own directory, none inside another" in denied.message


def test_a_flood_of_packages_on_one_path_is_denied_by_the_cap_in_a_short_message() -> None:
    # attack-multi: 500 packages at one path once cost 3 s and answered a 35 KB review with a 27 MB
    # denial (every pair's overlap). Over the cap only the cap is said; under it one overlap per package.
    flood = {f"package-url.p{i}": URL for i in range(500)} | {
        f"package-mount-path.p{i}": "/x" for i in range(500)
    }
    denied = denial(flood)
    assert denied.code == 403 and "asks for 500 packages" in denied.message
    assert "mounted at" not in denied.message
    eight = {f"package-url.p{i}": URL for i in range(8)} | {
        f"package-mount-path.p{i}": "/x" for i in range(8)
    }
    message = denial(eight).message
    assert message.count("are both mounted at /x") == 7  # p1..p7 each named once, against p0


def test_the_same_path_in_different_containers_is_fine() -> None:
    request = parse(
        {
            "package-url.a": URL,
            "package-url.b": TOOLS,
            "package-mount-path.a": "/config",
            "package-mount-path.b": "/config",
            "package-containers.a": "app",
            "package-containers.b": "sidecar",
        },
        Settings(),
    ).request
    assert request is not None and len(request.packages) == 2
    # Siblings with a common prefix do not nest.
    parse(
        {
            "package-url.a": URL,
            "package-url.b": TOOLS,
            "package-mount-path.a": "/p/t",
            "package-mount-path.b": "/p/t-2",
        },
        Settings(),
    )


def test_the_cap_counts_every_package_and_names_itself() -> None:
    many = {f"package-url.p{i}": TOOLS for i in range(8)}
    assert parse(many, Settings()).request is not None  # 8 named: the default cap
    denied = denial({**many, "package-url": URL})
    assert denied.code == 403
    assert (
        "asks for 9 packages, more than this cluster's maximum of 8 per Pod (setting max_packages_per_pod)"
        in (denied.message)
    )
    denied = denial({"package-url.a": URL, "package-url.b": URL}, Settings(max_packages_per_pod=1))
    assert "maximum of 1 per Pod" in denied.message


def test_a_prefix_applies_to_named_keys() -> None:
    settings = Settings(annotation_prefix="example.com/")
    parsed = parse(
        {"example.com/package-url.tools": TOOLS, "example.com/package-sha256.tools": DIGEST}, settings
    )
    assert parsed.warnings == ()
    assert parsed.request is not None and parsed.request.packages[0].sha256 == DIGEST
    assert ann.is_user_key("example.com/package-mount-path.tools", settings)
    assert not ann.is_user_key("package-url.tools", settings)
    assert not ann.is_user_key("example.com/package-size-limit.tools", settings)


@pytest.mark.parametrize(
    ("annotations", "fragment"),
    [
        (
            {"package-url.tools": TOOLS, "package-sha256.tols": DIGEST},
            'annotation "package-sha256.tols" names no package: there is no "package-url.tols", so it is '
            'ignored; did you mean "package-sha256.tools"?',
        ),
        (
            {"package-url.tools": TOOLS, "package-sha256.zzz": DIGEST},
            'there is no "package-url.zzz", so it is ignored; add "package-url.zzz" or remove it',
        ),
        (
            {"package-url.tools": TOOLS, "package-sha265.tools": DIGEST},
            'annotation "package-sha265.tools" is not a package-injector key and is ignored; '
            'did you mean "package-sha256.tools"?',
        ),
        (
            {"package-url.tools": TOOLS, "package-size-limit.tools": "1Gi"},
            'did you mean "package-size-limit"? (it holds for the whole Pod and takes no package name)',
        ),
        (
            {"package-url.tools": TOOLS, "pakage-url.extra": TOOLS},
            'did you mean "package-url.extra"?',
        ),
        (
            {"package-url.tools": TOOLS, "package-sha256": DIGEST},
            'package-sha256 set without "package-url": they describe the unnamed package, which this Pod '
            'does not have, and are ignored; add "package-url" or put them on a package\'s name, e.g. '
            '"package-sha256.tools"',
        ),
    ],
)
def test_misplaced_named_keys_get_a_warning_with_the_fix(annotations: dict[str, str], fragment: str) -> None:
    parsed = parse(annotations, Settings())
    assert parsed.request is not None
    assert any(fragment in w for w in parsed.warnings), parsed.warnings


def test_a_companion_without_any_package_url_injects_nothing_and_warns() -> None:
    parsed = parse({"package-sha256.tools": DIGEST}, Settings())
    assert parsed.request is None
    assert any('there is no "package-url.tools"' in w for w in parsed.warnings)


def test_the_unpinned_warning_names_each_packages_keys() -> None:
    settings = Settings(allowed_schemes=["https", "http", "oci"])
    parsed = parse(
        {"package-url.m": "http://mirror.local/a.tgz", "package-url.o": "oci://ghcr.io/org/app:1"}, settings
    )
    assert any(
        '"package-url.m" has no "package-sha256.m": the package is unverified (plain http' in w
        for w in parsed.warnings
    )
    assert any('"package-url.o" names a tag without a digest' in w for w in parsed.warnings)
    assert parsed.request is not None and parsed.request.packages[0].allow_http


def test_status_records_packages_and_reads_back() -> None:
    value = ann.status_value(
        ["app"],
        ["package-shared-volume", "package-shared-volume-tools"],
        None,
        [{"name": "tools", "volume": "package-shared-volume-tools", "containers": ["app"]}],
    )
    status = ann.read_status({"package-status": value}, Settings())
    assert status is not None and status["packages"][0]["name"] == "tools"
    # Without named packages the status is what it always was.
    assert ann.status_value(["app"], ["package-shared-volume"]) == (
        '{"version":1,"initContainer":"package-downloader","volumes":["package-shared-volume"],"containers":["app"]}'
    )
    bad = value.replace('"containers":["app"]}]', '"containers":"app"}]')
    assert ann.read_status({"package-status": bad}, Settings()) is None


_KINDS = {  # url, sha256 annotation or None, pinned
    "https": ("https://files.example.com/a.tar", None, False),
    "https-sha": ("https://files.example.com/a.tar", DIGEST, True),
    "http": ("http://files.example.com/a.tar", None, False),
    "http-sha": ("http://files.example.com/a.tar", DIGEST, True),
    "s3": ("s3://bucket/a.tar", None, False),
    "s3-sha": ("s3://bucket/a.tar", DIGEST, True),
    "oci-tag": ("oci://ghcr.io/team/site:v1", None, False),
    "oci-digest": (f"oci://ghcr.io/team/site@sha256:{DIGEST}", None, True),
    "oci-tag-digest": (f"oci://ghcr.io/team/site:v1@sha256:{DIGEST}", None, True),
}
_LONGEST_NAME = "n" * 38  # the longest NAME package-url.NAME allows


@pytest.mark.parametrize("prefix", ["", "packages.example.com/"])
@pytest.mark.parametrize("unnamed", [None, *_KINDS])
@pytest.mark.parametrize("named", list(_KINDS))
def test_every_unpinned_package_is_warned_once_whole_and_no_pinned_one(
    prefix: str, unnamed: str | None, named: str
) -> None:
    """One warning per unpinned package, none for a pinned one, each <= 256 characters.

    The apiserver cuts every warning to 256 characters once a response's warnings pass 4096 (a few
    packages, other webhooks' and PodSecurity's warnings): past 256 the fix ("add the SHA-256") is lost.
    The URLs (which may carry credentials or signed query strings) are never repeated in a warning.
    """
    settings = Settings(
        annotation_prefix=prefix,
        allowed_schemes=["https", "http", "oci", "s3"],
        s3_endpoint="http://minio.example:9000",  # plain http: the longest clause
    )
    annotations: dict[str, str] = {}
    expected = []
    for name, kind in (("", unnamed), (_LONGEST_NAME, named)):
        if kind is None:
            continue
        url, sha256, pinned = _KINDS[kind]
        suffix = f".{name}" if name else ""
        annotations[settings.key("package-url") + suffix] = url
        annotations[settings.key("package-mount-path") + suffix] = f"/opt/p{name}"
        if sha256 is not None:
            annotations[settings.key("package-sha256") + suffix] = sha256
        if not pinned:
            expected.append(f'"{settings.key("package-url")}{suffix}" ')
    warnings = parse(annotations, settings).warnings
    assert [w.split(" ", 2)[1] + " " for w in warnings] == expected, warnings
    for warning in warnings:
        assert len(warning) <= 256, (len(warning), warning)
        fixes = r'(add the SHA-256|pin it with @sha256:\.\.\.|add "[^"]*package-sha256(\.n+)?")$'
        assert re.search(fixes, warning), warning
        assert not any(url in warning for url, _, _ in _KINDS.values())
