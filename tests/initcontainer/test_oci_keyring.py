"""Credential matching for .dockerconfigjson, with the kubelet keyring's rules (initcontainer.oci.keyring)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from initcontainer.errors import ConfigError
from initcontainer.oci.keyring import (
    is_docker_hub_image,
    load_keyrings,
    lookup,
    parse_dockerconfig,
    urls_match,
)


def auth(user: str, password: str = "pw") -> dict[str, str]:
    return {"auth": base64.b64encode(f"{user}:{password}".encode()).decode()}


def users(keyring_json: dict[str, object], image: str) -> list[str | None]:
    keyring = parse_dockerconfig(json.dumps(keyring_json), "test")
    return [c.username for c in keyring.lookup(image)]


@pytest.mark.parametrize(
    ("key", "image", "expected"),
    [
        ("reg.io", "reg.io/app", True),
        ("reg.io", "other.io/app", False),
        ("*.reg.io", "a.reg.io/app", True),
        ("*.reg.io", "reg.io/app", False),  # label counts differ
        ("*.reg.io", "a.b.reg.io/app", False),
        ("*.*.io", "a.reg.io/app", True),
        ("reg.io:5000", "reg.io:5000/app", True),
        ("reg.io:5000", "reg.io/app", False),
        ("reg.io", "reg.io:5000/app", False),
        ("reg.io/team", "reg.io/team/app", True),
        ("reg.io/team", "reg.io/other/app", False),
        ("reg.io/team", "reg.io/team-b/app", True),  # a string prefix, as in the kubelet
        ("127.0.0.1:5000", "127.0.0.1:5000/app", True),
    ],
)
def test_urls_match(key: str, image: str, expected: bool) -> None:
    assert urls_match(key, image) is expected


def test_schemes_and_legacy_paths_are_the_bare_host() -> None:
    cfg = {"auths": {"https://reg.io/v2/": auth("a"), "http://other.io/v1/": auth("b"), "x.io/": auth("c")}}
    assert users(cfg, "reg.io/app") == ["a"]
    assert users(cfg, "other.io/team/app") == ["b"]
    assert users(cfg, "x.io/app") == ["c"]


def test_more_specific_keys_come_first_and_all_candidates_are_returned() -> None:
    cfg = {"auths": {"reg.io": auth("host"), "reg.io/team": auth("team"), "*.io": auth("glob")}}
    assert users(cfg, "reg.io/team/app") == ["team", "host", "glob"]
    assert users(cfg, "reg.io/else/app") == ["host", "glob"]


def test_docker_hub_aliases() -> None:
    login = {"auths": {"https://index.docker.io/v1/": auth("hub")}}
    assert users(login, "docker.io/library/nginx") == ["hub"]
    assert users(login, "docker.io/team/app") == ["hub"]
    assert users(login, "ghcr.io/team/app") == []
    direct = {"auths": {"docker.io": auth("direct"), "index.docker.io": auth("index")}}
    assert users(direct, "docker.io/library/nginx") == ["direct"]
    assert is_docker_hub_image("library/nginx") and is_docker_hub_image("nginx")
    assert is_docker_hub_image("index.docker.io/x/y") and not is_docker_hub_image("reg.io/x")
    assert not is_docker_hub_image("localhost:5000/x")


def test_credential_forms() -> None:
    cfg = {
        "auths": {
            "a.io": {"username": "u", "password": "p"},
            "b.io": {"auth": base64.b64encode(b"u2:p:with:colons").decode()},
            "c.io": {"identitytoken": "refresh-me"},
        }
    }
    keyring = parse_dockerconfig(json.dumps(cfg), "f")
    (a,) = keyring.lookup("a.io/x")
    (b,) = keyring.lookup("b.io/x")
    (c,) = keyring.lookup("c.io/x")
    assert (a.username, a.password) == ("u", "p")
    assert (b.username, b.password) == ("u2", "p:with:colons")
    assert c.identity_token == "refresh-me" and c.username is None
    assert "p:with" not in repr(b) and "refresh-me" not in repr(c)
    assert b.secrets() == ("p:with:colons",)


def test_legacy_dockercfg_layout() -> None:
    assert users({"reg.io": auth("old")}, "reg.io/app") == ["old"]


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("not json", "not valid JSON"),
        ("[]", "JSON object"),
        ('{"auths": []}', "'auths' must be an object"),
        ('{"auths": {"reg.io": {"auth": "!!!"}}}', "not base64"),
        ('{"auths": {"reg.io": {"auth": "' + base64.b64encode(b"nocolon").decode() + '"}}}', "user:password"),
    ],
)
def test_bad_files_name_the_file_not_the_secret(text: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_dockerconfig(text, "/creds/.dockerconfigjson")
    assert fragment in info.value.message and "/creds/.dockerconfigjson" in info.value.message


def test_several_files_are_searched_in_turn(tmp_path: Path) -> None:
    first = tmp_path / "a" / ".dockerconfigjson"
    second = tmp_path / "b" / ".dockerconfigjson"
    for path, user in ((first, "first"), (second, "second")):
        path.parent.mkdir()
        path.write_text(json.dumps({"auths": {"reg.io": auth(user)}}))
    keyrings = load_keyrings([first, second])
    assert [c.username for c in lookup(keyrings, "reg.io/app")] == ["first", "second"]
    big = tmp_path / "big"
    big.write_bytes(b" " * (2 << 20))
    with pytest.raises(ConfigError, match="larger than"):
        load_keyrings([big])
    with pytest.raises(ConfigError, match="cannot read"):
        load_keyrings([tmp_path / "missing"])
