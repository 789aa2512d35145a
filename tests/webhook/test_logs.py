"""Structured logs: one JSON object per line with the extra fields, text option, access log off by default,
and the real process's startup lines naming each port's true scheme."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.runtime import SecretVolume, server_process
from webhook import certs
from webhook.logs import MAX_FIELD_CHARS, configure_logging


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    out = io.StringIO()
    root = logging.getLogger()
    level = root.level
    yield out
    # Leave the root logger as pytest expects it.
    root.setLevel(level)
    for handler in list(root.handlers):
        if handler.get_name() == "package-injector":
            root.removeHandler(handler)


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_line_with_extra_fields(stream: io.StringIO) -> None:
    configure_logging("info", "json", stream=stream)
    logging.getLogger("package_injector.admission").info(
        "admission %s",
        "injected",
        extra={"uid": "u-1", "namespace": "ns", "pod": "web-", "decision": "injected", "reason": "annotated"},
    )
    [entry] = lines(stream)
    assert entry["message"] == "admission injected"
    assert entry["level"] == "info" and entry["logger"] == "package_injector.admission"
    assert {k: entry[k] for k in ("uid", "namespace", "pod", "decision", "reason")} == {
        "uid": "u-1",
        "namespace": "ns",
        "pod": "web-",
        "decision": "injected",
        "reason": "annotated",
    }
    assert str(entry["time"]).endswith("+00:00")


def test_level_filter_and_exceptions(stream: io.StringIO) -> None:
    configure_logging("warning", "json", stream=stream)
    log = logging.getLogger("t")
    log.info("hidden")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        log.exception("failed", extra={"uid": "u-2"})
    [entry] = lines(stream)
    assert entry["level"] == "error" and entry["uid"] == "u-2"
    assert "RuntimeError: boom" in str(entry["exception"])


def test_extras_cannot_shadow_reserved_keys_and_long_values_are_cut(stream: io.StringIO) -> None:
    configure_logging("info", "json", stream=stream)
    logging.getLogger("t").info(
        "m", extra={"level": "fake", "spec": "x" * (MAX_FIELD_CHARS * 3), "obj": object()}
    )
    [entry] = lines(stream)
    assert entry["level"] == "info" and entry["extra_level"] == "fake"
    assert len(str(entry["spec"])) < MAX_FIELD_CHARS + 20
    assert str(entry["obj"]).startswith("<object")


def test_reconfiguring_does_not_duplicate_lines(stream: io.StringIO) -> None:
    configure_logging("info", "json", stream=stream)
    configure_logging("info", "json", stream=stream)
    logging.getLogger("t").info("once")
    assert len(lines(stream)) == 1


def test_text_format(stream: io.StringIO) -> None:
    configure_logging("info", "text", stream=stream)
    logging.getLogger("t").info("hello", extra={"uid": "u-3"})
    text = stream.getvalue()
    assert "INFO" in text and "t: hello" in text and 'uid="u-3"' in text


def test_uvicorn_access_log_is_off_by_default_and_json_when_on(stream: io.StringIO) -> None:
    access = logging.getLogger("uvicorn.access")
    args = ("127.0.0.1:5000", "POST", "/mutate", "1.1", 200)
    configure_logging("info", "json", stream=stream)
    access.info('%s - "%s %s HTTP/%s" %d', *args)
    assert stream.getvalue() == ""
    configure_logging("info", "json", access_log=True, stream=stream)
    access.info('%s - "%s %s HTTP/%s" %d', *args)
    [entry] = lines(stream)
    assert entry["logger"] == "uvicorn.access"
    assert (entry["method"], entry["path"], entry["status"]) == ("POST", "/mutate", 200)
    configure_logging("info", "json", stream=stream)  # restore: access log off


def test_the_real_process_logs_each_ports_true_scheme_in_json(tmp_path: Path) -> None:
    """The admission port's TLS is ours, not uvicorn's: uvicorn alone would log it as http://."""
    ca = certs.new_ca("test CA", days=1)
    cert, key = certs.issue(*ca, ["localhost"], ["127.0.0.1"])
    volume = SecretVolume(tmp_path / "tls")
    volume.update({"tls.crt": cert, "tls.key": key})
    with server_process(tmp_path, volume.cert_file, volume.key_file, real_app=True) as server:
        server.wait_ready()
        assert server.terminate() == 0
    entries = [json.loads(line) for line in server.logs().splitlines()]  # every line JSON, or this raises
    urls = {entry.get("port_name"): entry.get("url") for entry in entries}
    assert urls["admission"] == f"https://127.0.0.1:{server.port}"
    assert urls["metrics"] == f"http://127.0.0.1:{server.metrics_port}"
    assert not [e for e in entries if f"http://127.0.0.1:{server.port}" in str(e["message"])], entries
