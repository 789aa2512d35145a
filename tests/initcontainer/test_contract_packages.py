"""PACKAGE_LIST, the named packages' half of the init container's env contract: validated whole."""

from __future__ import annotations

import json

import pytest

from initcontainer import contract
from initcontainer.contract import PackageEntry, package_name_problem, parse_concurrency, parse_package_list

URL = "https://files.example.com/tools.tar.gz"
DIGEST = "ab" * 32


def entry(name: str, **fields: object) -> dict[str, object]:
    return {"name": name, "url": URL, "dest": f"{contract.NAMED_DEST_ROOT}/{name}", **fields}


def test_full_and_minimal_entries() -> None:
    text = json.dumps(
        [
            entry(
                "tools",
                sha256="SHA256:" + DIGEST.upper(),
                stripComponents=1,
                credentialsDir="/var/run/secrets/package-injector/credentials-tools/",
            ),
            entry("Config.v2_x"),
        ]
    )
    assert parse_package_list(text, contract.DEFAULT_DEST) == (
        PackageEntry(
            name="tools",
            url=URL,
            dest="/shared-data/packages/tools",
            sha256=DIGEST,
            strip_components=1,
            credentials_dir="/var/run/secrets/package-injector/credentials-tools",
        ),
        PackageEntry(name="Config.v2_x", url=URL, dest="/shared-data/packages/Config.v2_x"),
    )


def test_default_roots_never_nest() -> None:
    assert not contract.NAMED_DEST_ROOT.startswith(contract.DEFAULT_DEST + "/")
    assert not contract.DEFAULT_DEST.startswith(contract.NAMED_DEST_ROOT + "/")


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("not json", "is not valid JSON"),
        ("{}", "non-empty JSON array"),
        ("[]", "non-empty JSON array"),
        ('["tools"]', "PACKAGE_LIST[0] must be an object"),
        (json.dumps([{**entry("a"), "password": "x"}]), "unknown field(s) password"),
        (json.dumps([{"url": URL, "dest": "/a"}]), "PACKAGE_LIST[0].name is missing"),
        (json.dumps([entry("-a")]), "starting and ending with a letter or digit"),
        (json.dumps([entry("a/b", dest="/a")]), "letters, digits"),
        (json.dumps([entry("x" * 39, dest="/x")]), "longer than 38"),
        (json.dumps([{"name": "a", "dest": "/a"}]), "package 'a': url is missing"),
        (json.dumps([entry("a", sha256="abc")]), "sha256 must be 64 hex digits"),
        (json.dumps([entry("a", stripComponents=33)]), "stripComponents must be an integer from 0 to 32"),
        (json.dumps([entry("a", stripComponents=True)]), "stripComponents must be an integer"),
        (json.dumps([entry("a", stripComponents="1")]), "stripComponents must be an integer"),
        (json.dumps([entry("a", dest="relative")]), "dest must be an absolute directory"),
        (json.dumps([entry("a", dest="/")]), "dest must be an absolute directory"),
        (json.dumps([entry("a", dest="/x/../etc")]), "must not contain '..'"),
        (json.dumps([{"name": "a", "url": URL}]), "dest must be an absolute directory"),
        (json.dumps([entry("a", credentialsDir="creds")]), "credentialsDir must be an absolute directory"),
        (json.dumps([entry("a"), entry("a")]), "names 'a' more than once"),
        (json.dumps([entry("a", dest="/p"), entry("b", dest="/p/b")]), "overlap"),
        (json.dumps([entry("a", dest="/p/"), entry("b", dest="/p")]), "overlap"),
    ],
)
def test_bad_lists_are_refused_with_the_reason(value: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=None) as info:
        parse_package_list(value)
    assert fragment in str(info.value)


def test_named_package_may_not_nest_with_the_unnamed_one() -> None:
    text = json.dumps([entry("a", dest=contract.DEFAULT_DEST + "/a")])
    parse_package_list(text)  # alone it is fine
    with pytest.raises(ValueError, match="'the unnamed package'"):
        parse_package_list(text, contract.DEFAULT_DEST)
    # Siblings with a common prefix are not nested.
    parse_package_list(json.dumps([entry("a", dest="/p/tools"), entry("b", dest="/p/tools-2")]), "/p/t")


def test_no_secret_value_is_echoed() -> None:
    with pytest.raises(ValueError) as info:
        parse_package_list(json.dumps([{**entry("a"), "token": "s3cr3t-value"}]))
    assert "s3cr3t-value" not in str(info.value)


def test_names_follow_annotation_name_rules() -> None:
    for good in ("a", "tools", "A1", "my.pkg_v2-x", "x" * 38):
        assert package_name_problem(good) is None, good
    for bad in ("", "-a", "a-", ".a", "a b", "a/b", "ä", "x" * 39):
        assert package_name_problem(bad) is not None, bad
    # The longest companion key still makes a valid annotation key name part (at most 63 characters).
    assert len("package-strip-components." + "x" * contract.MAX_PACKAGE_NAME) == 63


def test_list_is_known_to_the_init_program_and_never_a_cluster_setting() -> None:
    from webhook.settings import RESERVED_INIT_ENV

    assert {contract.ENV_PACKAGE_LIST, contract.ENV_CONCURRENCY} <= contract.KNOWN_ENV
    assert contract.ENV_PACKAGE_LIST in RESERVED_INIT_ENV  # derived per Pod
    assert contract.ENV_CONCURRENCY not in RESERVED_INIT_ENV  # a cluster may tune it in init_env


@pytest.mark.parametrize(("text", "value"), [("1", 1), (" 4 ", 4), ("16", 16)])
def test_concurrency(text: str, value: int) -> None:
    assert parse_concurrency(text) == value


@pytest.mark.parametrize("text", ["0", "17", "-1", "two", "", "٣"])
def test_bad_concurrency(text: str) -> None:
    with pytest.raises(ValueError, match="from 1 to 16"):
        parse_concurrency(text)
