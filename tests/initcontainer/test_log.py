"""Log helpers: the human forms in progress lines (the JSON fields stay exact)."""

from __future__ import annotations

import pytest

from initcontainer.log import human_duration


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.4, "0s"), (5, "5s"), (59.6, "1m00s"), (75, "1m15s"), (3599, "59m59s"), (3725, "1h02m")],
)
def test_human_duration(seconds: float, text: str) -> None:
    assert human_duration(seconds) == text
