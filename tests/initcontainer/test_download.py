"""The package stream: resume with Range/If-Range, restarts, limits, timeouts, hashing, peek."""

from __future__ import annotations

import hashlib
import io
import json
import time
from pathlib import Path

import pytest

from initcontainer import contract
from initcontainer.download import CHUNK_SIZE, PackageStream, open_package
from initcontainer.errors import IntegrityError, RestartDownload, TransportError
from initcontainer.log import Logger, Progress
from tests.initcontainer.httpkit import PAYLOAD, check, fetch_all, make_cfg
from tests.support.faults import FaultServer, Respond
from tests.support.nginx import NginxServer, run_nginx


def test_plain_download(nginx: NginxServer, tmp_path: Path) -> None:
    data, stream = fetch_all(make_cfg(nginx.url("pkg.bin"), tmp_path))
    check(data, stream)
    assert stream.total == len(PAYLOAD)


def test_empty_body_is_an_error(nginx: NginxServer, tmp_path: Path) -> None:
    with pytest.raises(IntegrityError, match="empty body"):
        fetch_all(make_cfg(nginx.url("empty.bin"), tmp_path))


def test_content_length_over_limit_fails_before_reading(nginx: NginxServer, tmp_path: Path) -> None:
    cfg = make_cfg(nginx.url("pkg.bin"), tmp_path, **{contract.ENV_MAX_DOWNLOAD_BYTES: "500k"})
    with pytest.raises(IntegrityError, match="PACKAGE_MAX_DOWNLOAD_BYTES"):
        open_package(cfg, Logger(stream=io.StringIO()))


def test_total_timeout(tmp_path: Path) -> None:
    root = tmp_path / "www"
    root.mkdir()
    (root / "pkg.bin").write_bytes(PAYLOAD)
    with run_nginx(root, tmp_path / "ng", limit_rate="100k") as slow:
        cfg = make_cfg(slow.url("pkg.bin"), tmp_path, **{contract.ENV_TOTAL_TIMEOUT: "1"})
        log = Logger(stream=io.StringIO())
        # At 100 KB/s the body takes seconds: only the 1 s deadline ends it (mid-read or before a retry).
        with (
            pytest.raises(TransportError, match="PACKAGE_TOTAL_TIMEOUT=1s"),
            open_package(cfg, log, deadline=time.monotonic() + 1) as s,
        ):
            s.read(-1)


def test_progress_lines_on_slow_download(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "www"
    root.mkdir()
    (root / "pkg.bin").write_bytes(PAYLOAD)
    out = io.StringIO()
    with run_nginx(root, tmp_path / "ng", limit_rate="400k") as slow:
        import initcontainer.download as download_mod

        class FastProgress(Progress):
            def __init__(self, log: Logger, total: int | None) -> None:
                super().__init__(log, total, interval=0.2)

        monkeypatch.setattr(download_mod, "Progress", FastProgress)
        check(*fetch_all(make_cfg(slow.url("pkg.bin"), tmp_path), Logger(stream=out)))
    lines = [line for line in out.getvalue().splitlines() if '"download_progress"' in line]
    assert lines, out.getvalue()
    assert '"percent"' in lines[0] and '"bytesPerSecond"' in lines[0]
    # The size is known (Content-Length): every progress line says how long is left, from the average rate,
    # and at nginx's steady limit_rate that prediction meets the real end of the download.
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    progress = [e for e in events if e["event"] == "download_progress"]
    (done,) = [e for e in events if e["event"] == "download_complete"]
    for line in progress:
        expected = (line["totalBytes"] - line["bytes"]) / line["bytesPerSecond"]
        assert abs(line["etaSeconds"] - expected) <= 1, line
        assert line["msg"].endswith(" left"), line["msg"]
    last = progress[-1]
    assert abs(last["elapsedSeconds"] + last["etaSeconds"] - done["elapsedSeconds"]) <= 1.5, (last, done)
    assert "etaSeconds" not in done


def test_progress_without_a_known_size_has_no_eta(
    faults: FaultServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import initcontainer.download as download_mod

    class FastProgress(Progress):
        def __init__(self, log: Logger, total: int | None) -> None:
            super().__init__(log, total, interval=0.0)

    monkeypatch.setattr(download_mod, "Progress", FastProgress)
    faults.script("/pkg", Respond(body=PAYLOAD, chunked=True, send_length=False))
    out = io.StringIO()
    check(*fetch_all(make_cfg(faults.url("/pkg"), tmp_path), Logger(stream=out)))
    progress = [json.loads(x) for x in out.getvalue().splitlines() if '"download_progress"' in x]
    assert progress and all("etaSeconds" not in e and "totalBytes" not in e for e in progress)


def test_reset_mid_body_is_resumed_with_range(faults: FaultServer, tmp_path: Path) -> None:
    faults.script("/pkg", Respond(body=PAYLOAD, cut_after=300_000), Respond(body=PAYLOAD))
    data, stream = fetch_all(make_cfg(faults.url("/pkg"), tmp_path))
    check(data, stream)
    assert stream.resumes == 1
    second = faults.requests_to("/pkg")[1]
    # http.client fills whole chunks, so the resume starts at the last full chunk received.
    assert second.header("Range") == f"bytes={CHUNK_SIZE}-"
    assert second.header("If-Range") == '"v1"'


def test_clean_close_mid_body_is_resumed(faults: FaultServer, tmp_path: Path) -> None:
    faults.script("/pkg", Respond(body=PAYLOAD, cut_after=CHUNK_SIZE * 2, cut="close"), Respond(body=PAYLOAD))
    data, stream = fetch_all(make_cfg(faults.url("/pkg"), tmp_path))
    check(data, stream)
    assert faults.requests_to("/pkg")[1].header("Range") == f"bytes={CHUNK_SIZE * 2}-"


def test_chunked_body_reset_is_resumed(faults: FaultServer, tmp_path: Path) -> None:
    faults.script("/pkg", Respond(body=PAYLOAD, chunked=True, cut_after=500_000), Respond(body=PAYLOAD))
    check(*fetch_all(make_cfg(faults.url("/pkg"), tmp_path)))


def test_resume_with_last_modified(faults: FaultServer, tmp_path: Path) -> None:
    lm = "Wed, 21 Oct 2015 07:28:00 GMT"
    faults.script(
        "/pkg",
        Respond(body=PAYLOAD, etag=None, last_modified=lm, cut_after=CHUNK_SIZE),
        Respond(body=PAYLOAD, etag=None, last_modified=lm),
    )
    check(*fetch_all(make_cfg(faults.url("/pkg"), tmp_path)))
    assert faults.requests_to("/pkg")[1].header("If-Range") == lm


def test_changed_file_restarts(faults: FaultServer, tmp_path: Path) -> None:
    faults.script(
        "/pkg", Respond(body=PAYLOAD, cut_after=CHUNK_SIZE), Respond(body=PAYLOAD[::-1], etag='"v2"')
    )
    with pytest.raises(RestartDownload, match="whole file"):
        fetch_all(make_cfg(faults.url("/pkg"), tmp_path))


def test_server_without_range_support_restarts(faults: FaultServer, tmp_path: Path) -> None:
    faults.script("/pkg", Respond(body=PAYLOAD, cut_after=CHUNK_SIZE), Respond(body=PAYLOAD, ranges=False))
    with pytest.raises(RestartDownload):
        fetch_all(make_cfg(faults.url("/pkg"), tmp_path))


def test_no_validator_restarts(faults: FaultServer, tmp_path: Path) -> None:
    faults.script(
        "/pkg", Respond(body=PAYLOAD, etag=None, cut_after=CHUNK_SIZE), Respond(body=PAYLOAD, etag=None)
    )
    with pytest.raises(RestartDownload, match="neither ETag nor Last-Modified"):
        fetch_all(make_cfg(faults.url("/pkg"), tmp_path))


def test_reset_before_any_byte_just_retries(faults: FaultServer, tmp_path: Path) -> None:
    faults.script("/pkg", Respond(body=PAYLOAD, cut_after=0), Respond(body=PAYLOAD))
    check(*fetch_all(make_cfg(faults.url("/pkg"), tmp_path)))
    assert faults.requests_to("/pkg")[1].header("Range") is None


def test_stalled_server_times_out(faults: FaultServer, tmp_path: Path) -> None:
    faults.script("/pkg", Respond(body=PAYLOAD, cut_after=1000, cut="stall", stall_seconds=20))
    cfg = make_cfg(
        faults.url("/pkg"), tmp_path, **{contract.ENV_READ_TIMEOUT: "1", contract.ENV_RETRIES: "0"}
    )
    started = time.monotonic()
    with pytest.raises(TransportError, match=r"giving up after 1 attempt.*(timed out|TimeoutError)"):
        fetch_all(cfg)
    # The read timeout fired: the message says so (the stall ending would be a closed connection), and
    # not before its second (a lower bound holds on any machine; an upper one would not).
    assert time.monotonic() - started >= 0.9


def test_bytes_beyond_content_length_are_not_part_of_the_body(faults: FaultServer, tmp_path: Path) -> None:
    faults.script("/pkg", Respond(body=PAYLOAD, extra=b"SMUGGLED" * 5000))
    check(*fetch_all(make_cfg(faults.url("/pkg"), tmp_path)))


def test_resume_answered_with_another_version_restarts(faults: FaultServer, tmp_path: Path) -> None:
    """A cache that ignores If-Range serves a 206 of the new version: never spliced onto the old bytes."""
    other = PAYLOAD[::-1]
    faults.script(
        "/pkg",
        Respond(body=PAYLOAD, cut_after=CHUNK_SIZE),
        Respond(body=other, etag='"v2"', honour_if_range=False),
    )
    with pytest.raises(RestartDownload, match="changed during the download"):
        fetch_all(make_cfg(faults.url("/pkg"), tmp_path))
    second = faults.requests_to("/pkg")[1]
    assert second.header("If-Range") == '"v1"' and second.header("Range") == f"bytes={CHUNK_SIZE}-"


def test_short_206_is_continued_to_the_end(faults: FaultServer, tmp_path: Path) -> None:
    """A 206 may cover less than asked for: keep asking until the whole file is there."""
    faults.script(
        "/pkg", Respond(body=PAYLOAD, cut_after=CHUNK_SIZE), Respond(body=PAYLOAD, max_range_bytes=300_000)
    )
    data, stream = fetch_all(make_cfg(faults.url("/pkg"), tmp_path, **{contract.ENV_RETRIES: "5"}))
    check(data, stream)
    assert stream.resumes == 2  # 1 chunk, then two 300000-byte parts cover the rest


def test_chunked_body_over_limit(faults: FaultServer, tmp_path: Path) -> None:
    faults.script("/pkg", Respond(body=PAYLOAD, chunked=True))
    cfg = make_cfg(faults.url("/pkg"), tmp_path, **{contract.ENV_MAX_DOWNLOAD_BYTES: "300000"})
    with pytest.raises(IntegrityError, match="larger than PACKAGE_MAX_DOWNLOAD_BYTES"):
        fetch_all(cfg)


def test_peek_does_not_consume(faults: FaultServer, tmp_path: Path) -> None:
    faults.script("/pkg", Respond(body=PAYLOAD))
    with open_package(make_cfg(faults.url("/pkg"), tmp_path), Logger(stream=io.StringIO())) as s:
        head = s.peek(512)
        assert head == PAYLOAD[:512]
        assert s.read(10) == PAYLOAD[:10]
        rest = s.read(-1)
        assert PAYLOAD[:10] + rest == PAYLOAD
        assert s.read(100) == b""


def test_stream_of_another_url_checks_its_expected_digest(faults: FaultServer, tmp_path: Path) -> None:
    """How a registry blob is fetched: its own URL, its digest checked at the end of the body."""
    faults.script("/blobs/good", Respond(body=PAYLOAD))
    faults.script("/blobs/bad", Respond(body=PAYLOAD[:-1] + b"!"))
    cfg = make_cfg(faults.url("/manifest"), tmp_path)
    log = Logger(stream=io.StringIO())
    digest = hashlib.sha256(PAYLOAD).hexdigest()
    with PackageStream(cfg, log, url=faults.url("/blobs/good"), expected_sha256=digest).open() as stream:
        check(stream.read(-1), stream)
    bad = PackageStream(cfg, log, url=faults.url("/blobs/bad"), expected_sha256=digest).open()
    with bad, pytest.raises(IntegrityError, match=f"/blobs/bad: .* not the expected sha256:{digest}"):
        bad.read(-1)
    assert faults.requests_to("/manifest") == []
