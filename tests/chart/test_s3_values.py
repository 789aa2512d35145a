"""The chart's s3:// policy values: rendered into the webhook's settings, and checked by the schema."""

from __future__ import annotations

from typing import Any

import helm_python as helm
import pytest

from tests.chart.helpers import render
from tests.chart.test_render import settings_of


def test_defaults_allow_s3_and_set_no_s3_settings(tmp_path: Any) -> None:
    s = settings_of(render(), tmp_path)
    assert s.allowed_schemes == ["https", "oci", "s3"]
    assert (s.s3_region, s.s3_endpoint, s.sts_endpoint) == (None, None, None)


def test_s3_values_reach_the_settings(tmp_path: Any) -> None:
    values = {
        "policy": {
            "allowedHosts": ["files.example.com", "s3://packages", "s3://*"],
            "s3": {
                "region": "eu-central-1",
                "endpoint": "https://minio.storage.svc:9000",
                "stsEndpoint": "https://sts.eu-central-1.amazonaws.com",
            },
        }
    }
    s = settings_of(render(values), tmp_path)
    assert s.allowed_hosts == ["files.example.com", "s3://packages", "s3://*"]
    assert s.s3_region == "eu-central-1"
    assert s.s3_endpoint == "https://minio.storage.svc:9000"
    assert s.sts_endpoint == "https://sts.eu-central-1.amazonaws.com"


@pytest.mark.parametrize(
    "values",
    [
        {"policy": {"allowedHosts": ["s3://Bad_Bucket"]}},
        {"policy": {"allowedHosts": ["gs://bucket"]}},
        {"policy": {"s3": {"region": "EU West"}}},
        {"policy": {"s3": {"endpoint": "minio:9000"}}},
        {"policy": {"s3": {"endpoint": "https://user:pw@minio"}}},
        {"policy": {"s3": {"stsEndpoint": "https://sts.example?x=1"}}},
        {"policy": {"s3": {"bucket": "x"}}},
    ],
)
def test_schema_rejects_bad_s3_values(values: dict[str, Any]) -> None:
    with pytest.raises(helm.HelmError):
        render(values)
