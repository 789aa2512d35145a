"""SigV4 against AWS's published examples.

The expected values are the documented results of AWS's Signature Version 4 test
suite (service "service", 2015-08-30) and of the worked examples in the S3 API
reference ("Signature Calculations for the Authorization Header", 2013-05-24).
A real S3 server recomputing our signatures is in test_s3_server.py.
"""

from __future__ import annotations

import calendar
import hashlib
import hmac

import pytest

from initcontainer import sigv4
from initcontainer.sigv4 import AwsCredentials

SUITE_SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
SUITE_DATE = "20150830T123600Z"
SUITE_SCOPE = "20150830/us-east-1/service/aws4_request"
S3_DOC = AwsCredentials("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
S3_DOC_TIME = float(calendar.timegm((2013, 5, 24, 0, 0, 0)))


def suite_signature(method: str, path: str, query: str, payload: bytes = b"") -> str:
    headers = {"Host": "example.amazonaws.com", "X-Amz-Date": SUITE_DATE}
    canonical, signed = sigv4.canonical_request(
        method, path, query, headers, hashlib.sha256(payload).hexdigest()
    )
    assert signed == "host;x-amz-date"
    key = sigv4.signing_key(SUITE_SECRET, "20150830", "us-east-1", "service")
    return hmac.new(
        key, sigv4.string_to_sign(SUITE_DATE, SUITE_SCOPE, canonical).encode(), hashlib.sha256
    ).hexdigest()


@pytest.mark.parametrize(
    ("name", "method", "path", "query", "expected"),
    [
        ("get-vanilla", "GET", "/", "", "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"),
        (
            "get-vanilla-query-order-key-case",
            "GET",
            "/",
            "Param2=value2&Param1=value1",
            "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500",
        ),
        (
            "get-utf8",
            "GET",
            "/\u1234",
            "",
            "8318018e0b0f223aa2bbf98705b62bb787dc9c0e678f255a891fd03141be5d85",
        ),
        ("post-vanilla", "POST", "/", "", "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"),
    ],
)
def test_aws_signature_v4_test_suite(name: str, method: str, path: str, query: str, expected: str) -> None:
    assert suite_signature(method, path, query) == expected, name


def test_get_utf8_canonical_path_is_encoded_once() -> None:
    # The same key written raw or percent-encoded in the URL signs the same way.
    assert sigv4.canonical_path("/\u1234") == "/%E1%88%B4"
    assert sigv4.canonical_path("/%E1%88%B4") == "/%E1%88%B4"


def test_signing_key_of_the_suite() -> None:
    key = sigv4.signing_key(SUITE_SECRET, "20150830", "us-east-1", "service")
    assert key.hex() == "938127b5336810ddb6a5d6af445fcac9e371f9ed418ed386b022aed82901be75"


def sign_like_the_s3_docs(method: str, url: str, headers: dict[str, str], **kwargs: str) -> dict[str, str]:
    """`sigv4.sign` with the key, region and time of the S3 documentation's examples."""
    return sigv4.sign(method, url, headers, S3_DOC, region="us-east-1", now=S3_DOC_TIME, **kwargs)


def test_s3_get_object_example() -> None:
    added = sign_like_the_s3_docs(
        "GET",
        "https://examplebucket.s3.amazonaws.com/test.txt",
        {"Range": "bytes=0-9", "User-Agent": "not signed"},
    )
    assert added["Host"] == "examplebucket.s3.amazonaws.com"
    assert added["x-amz-date"] == "20130524T000000Z"
    assert added["x-amz-content-sha256"] == sigv4.EMPTY_SHA256
    assert added["Authorization"] == (
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
        "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
        "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
    )


def test_s3_put_object_example_with_an_escaped_key() -> None:
    body = b"Welcome to Amazon S3."
    added = sign_like_the_s3_docs(
        "PUT",
        "https://examplebucket.s3.amazonaws.com/test$file.text",
        {"Date": "Fri, 24 May 2013 00:00:00 GMT", "x-amz-storage-class": "REDUCED_REDUNDANCY"},
        payload_hash=hashlib.sha256(body).hexdigest(),
    )
    # Date is not among the headers we sign (a proxy may rewrite it), so compare the canonical form
    # the example documents by signing with it explicitly.
    canonical, signed = sigv4.canonical_request(
        "PUT",
        "/test$file.text",
        "",
        {
            "date": "Fri, 24 May 2013 00:00:00 GMT",
            "host": "examplebucket.s3.amazonaws.com",
            "x-amz-content-sha256": added["x-amz-content-sha256"],
            "x-amz-date": "20130524T000000Z",
            "x-amz-storage-class": "REDUCED_REDUNDANCY",
        },
        added["x-amz-content-sha256"],
    )
    assert canonical.splitlines()[1] == "/test%24file.text"
    assert signed == "date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class"
    sts = sigv4.string_to_sign("20130524T000000Z", "20130524/us-east-1/s3/aws4_request", canonical)
    assert sts.splitlines()[-1] == "9e0e90d9c76de8fa5b200d8c849cd5b8dc7a3be3951ddb7f6a76b4158342019d"
    assert "SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-storage-class," in added["Authorization"]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("lifecycle", "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543"),
        ("max-keys=2&prefix=J", "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"),
        ("prefix=J&max-keys=2", "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"),
    ],
)
def test_s3_query_examples(query: str, expected: str) -> None:
    added = sign_like_the_s3_docs("GET", f"https://examplebucket.s3.amazonaws.com/?{query}", {})
    assert added["Authorization"].endswith(f"Signature={expected}")


def test_session_token_is_signed_and_secrets_stay_out_of_repr() -> None:
    creds = AwsCredentials("ASIAEXAMPLE", "s3cr3t-value", session_token="t0ken-value")
    added = sigv4.sign("GET", "http://127.0.0.1:9000/b/k", {}, creds, region="eu-west-1", now=S3_DOC_TIME)
    assert added["x-amz-security-token"] == "t0ken-value"
    assert "x-amz-security-token" in added["Authorization"].split("SignedHeaders=")[1].split(",")[0]
    assert added["Host"] == "127.0.0.1:9000"
    assert "s3cr3t" not in added["Authorization"]
    assert "s3cr3t" not in repr(creds) and "t0ken" not in repr(creds)


def test_host_header_drops_default_ports_and_brackets_ipv6() -> None:
    assert sigv4.host_header("https://Bucket.Example.com:443/k") == "bucket.example.com"
    assert sigv4.host_header("http://example.com:80/k") == "example.com"
    assert sigv4.host_header("https://example.com:8443/k") == "example.com:8443"
    assert sigv4.host_header("http://[::1]:9000/k") == "[::1]:9000"


def test_a_caller_host_header_is_replaced_not_doubled() -> None:
    added = sign_like_the_s3_docs(
        "GET",
        "https://examplebucket.s3.amazonaws.com/test.txt",
        {"host": "evil.example", "Range": "bytes=0-9"},
    )
    assert added["Authorization"].endswith(
        "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
    )
