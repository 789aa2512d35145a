"""WWW-Authenticate parsing, token requests and token responses (initcontainer.oci.auth)."""

from __future__ import annotations

import base64
import json
import urllib.parse

import pytest

from initcontainer.errors import HTTPClientError
from initcontainer.oci.auth import (
    Challenge,
    basic_authorization,
    parse_challenges,
    parse_token_response,
    pull_scope,
    token_request,
)
from initcontainer.oci.keyring import RegistryCredential


def test_docker_hub_style_bearer_challenge() -> None:
    (c,) = parse_challenges(
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
        'scope="repository:library/nginx:pull,push"'
    )
    assert c.scheme == "bearer"
    assert c.params == {
        "realm": "https://auth.docker.io/token",
        "service": "registry.docker.io",
        "scope": "repository:library/nginx:pull,push",
    }


def test_several_challenges_odd_spacing_escapes_and_case() -> None:
    cs = parse_challenges(
        'Basic realm="basic-realm" , BEARER Realm = "https://a/t" ,error="x\\"y", Negotiate'
    )
    assert [c.scheme for c in cs] == ["basic", "bearer", "negotiate"]
    assert cs[0].realm == "basic-realm"
    assert cs[1].params == {"realm": "https://a/t", "error": 'x"y'}
    assert cs[2].params == {}


def test_unquoted_values_and_garbage() -> None:
    (c,) = parse_challenges("Bearer realm=https://a/t,service=reg")
    assert c.params == {"realm": "https://a/t", "service": "reg"}
    assert parse_challenges("") == []
    assert parse_challenges('=broken "') == []


def test_token_request_with_basic_credentials() -> None:
    c = Challenge("bearer", {"realm": "https://auth.example/token?x=1", "service": "reg"})
    req = token_request(c, pull_scope("team/app"), RegistryCredential("alice", "s3cret"), "https", "reg.io")
    parts = urllib.parse.urlsplit(req.url)
    assert (parts.scheme, parts.netloc, parts.path) == ("https", "auth.example", "/token")
    assert urllib.parse.parse_qs(parts.query) == {
        "x": ["1"],
        "service": ["reg"],
        "scope": ["repository:team/app:pull"],
        "account": ["alice"],
    }
    assert req.headers["Authorization"] == "Basic " + base64.b64encode(b"alice:s3cret").decode()
    assert "s3cret" not in repr(req)


def test_token_request_anonymous() -> None:
    c = Challenge("bearer", {"realm": "https://auth.example/token"})
    anon = token_request(c, "repository:a:pull", None, "https", "reg.io")
    assert "Authorization" not in anon.headers and "service" not in anon.url
    assert anon.url == "https://auth.example/token?scope=repository%3Aa%3Apull"


@pytest.mark.parametrize(
    ("realm", "scheme", "fragment"),
    [
        (None, "https", "named no realm"),
        ("http://auth.example/token", "https", "plain-http token realm"),
        ("ftp://auth.example/token", "https", "unsupported scheme"),
        ("https://u:p@auth.example/token", "https", "userinfo"),
        ("https://auth.example:99999/", "https", "not a valid URL"),
        ("https://169.254.169.254/latest", "https", "link-local address"),
        ("https://10.1.2.3/token", "https", "private address"),
        ("https://127.0.0.1:5001/token", "https", "loopback address"),
        ("https://localhost/token", "https", "loopback address"),
    ],
)
def test_bad_realms_are_refused(realm: str | None, scheme: str, fragment: str) -> None:
    params = {"realm": realm} if realm is not None else {}
    with pytest.raises(HTTPClientError) as info:
        token_request(Challenge("bearer", params), "s", RegistryCredential("a", "b"), scheme, "reg.io")
    assert fragment in info.value.message


def test_plain_http_realm_is_fine_for_a_plain_http_registry() -> None:
    req = token_request(Challenge("bearer", {"realm": "http://a/t"}), "s", None, "http", "reg.io")
    assert req.url.startswith("http://a/t?")


def test_token_responses() -> None:
    t = parse_token_response(json.dumps({"token": "abc", "expires_in": 300}).encode(), now=1000.0)
    assert t.authorization == "Bearer abc" and t.expires_at == 1300.0
    assert t.fresh(1289.0) and not t.fresh(1291.0)
    default = parse_token_response(b'{"access_token": "xyz"}', now=0.0)
    assert default.value == "xyz" and default.expires_at == 60.0
    short = parse_token_response(b'{"token": "s", "expires_in": 4}', now=0.0)
    assert short.fresh(1.9) and not short.fresh(2.1)  # a short-lived token is still usable once
    assert "abc" not in repr(t)
    for odd in (b"NaN", b"Infinity", b"-1", b"true", b'"300"'):
        assert parse_token_response(b'{"token": "t", "expires_in": ' + odd + b"}", now=0.0).expires_at == 60.0


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"<html>login</html>", "did not answer JSON"),
        (b"[]", "not an object"),
        (b"{}", "holds no token"),
        (b'{"token": "a b"}', "header-safe"),
        (b'{"token": "a\\r\\nX-Evil: 1"}', "header-safe"),
        (b'{"token": "' + b"a" * 70000 + b'"}', "too long"),
        (b" " * (2 << 20), "more than"),
    ],
)
def test_bad_token_responses(body: bytes, fragment: str) -> None:
    with pytest.raises(HTTPClientError) as info:
        parse_token_response(body, now=0.0)
    assert fragment in info.value.message


def test_basic_authorization() -> None:
    assert basic_authorization(RegistryCredential("u", "p")) == "Basic dTpw"
    assert basic_authorization(RegistryCredential(identity_token="t")) is None


@pytest.mark.parametrize(
    ("registry", "realm"),
    [
        ("127.0.0.1", "https://127.0.0.1:5001/token"),  # a registry next to the cluster
        ("10.0.0.7", "https://10.0.0.8/token"),
        ("localhost", "https://127.0.0.1/token"),
        ("harbor.internal", "https://harbor.internal/service/token"),  # names are not resolved
        ("reg.io", "https://auth.reg.io/token"),
    ],
)
def test_internal_realms_for_internal_registries(registry: str, realm: str) -> None:
    req = token_request(Challenge("bearer", {"realm": realm}), "s", None, "https", registry)
    assert req.url.startswith(realm)
