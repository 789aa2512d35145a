"""bench.cluster_ready's reading of Pod objects, container timestamps and logs (no cluster needed)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bench.cluster_ready import (
    in_process_seconds,
    manifest,
    milestones,
    paired,
    rfc3339_ns,
    same_as_seed,
    server_times,
)


def _pod(conditions: dict[str, str], init_state: dict[str, Any] | None = None) -> dict[str, Any]:
    status: dict[str, Any] = {
        "conditions": [
            {"type": t, "status": "True", "lastTransitionTime": ts} for t, ts in conditions.items()
        ]
    }
    if init_state is not None:
        status["initContainerStatuses"] = [{"name": "x", "state": init_state}]
    return {"metadata": {"name": "p", "creationTimestamp": "2026-12-02T14:00:00Z"}, "status": status}


def test_milestones_follow_the_pod_through_its_life() -> None:
    assert milestones(_pod({})) == {"seen"}
    assert milestones(_pod({"PodScheduled": "t"}, {"waiting": {}})) == {"seen", "scheduled"}
    running = _pod({"PodScheduled": "t"}, {"running": {}})
    assert milestones(running) == {"seen", "scheduled", "init_running"}
    done = _pod({"PodScheduled": "t", "Ready": "t"}, {"terminated": {"exitCode": 0}})
    assert milestones(done) == {"seen", "scheduled", "init_running", "init_done", "ready"}


def test_a_failed_init_container_is_a_failure_not_a_finish() -> None:
    marks = milestones(_pod({"PodScheduled": "t"}, {"terminated": {"exitCode": 3}}))
    assert "failed" in marks and "init_done" not in marks


def test_a_condition_that_is_not_true_is_no_milestone() -> None:
    pod = _pod({})
    pod["status"]["conditions"] = [{"type": "Ready", "status": "False", "lastTransitionTime": "x"}]
    assert milestones(pod) == {"seen"}


def test_server_times_count_from_the_creation_timestamp() -> None:
    pod = _pod(
        {"PodScheduled": "2026-12-02T14:00:00Z", "Ready": "2026-12-02T14:00:07Z"},
        {"terminated": {"startedAt": "2026-12-02T14:00:02Z", "finishedAt": "2026-12-02T14:00:05Z"}},
    )
    assert server_times(pod) == {"scheduled": 0, "init_started": 2, "init_finished": 5, "ready": 7}


def test_rfc3339_ns_keeps_the_nanoseconds() -> None:
    whole = rfc3339_ns("2026-12-02T14:00:01Z")
    assert rfc3339_ns("2026-12-02T14:00:01.123456789Z") - whole == pytest.approx(0.123456789)
    assert rfc3339_ns("2026-12-02T16:00:01.5+02:00") - whole == pytest.approx(0.5)
    with pytest.raises(ValueError, match="not an RFC 3339"):
        rfc3339_ns("yesterday")


def test_in_process_seconds_reads_the_installed_line_only() -> None:
    lines = [
        json.dumps({"event": "start", "seconds": 99}),
        "a line that is not JSON",
        json.dumps({"event": "installed", "seconds": 1.25}),
    ]
    assert in_process_seconds("\n".join(lines)) == 1.25
    assert in_process_seconds(lines[0]) is None


def test_paired_ratios_are_per_round_seed_over_ours() -> None:
    out = paired(seed=[4.0, 3.0, 9.0], ours=[2.0, 3.0, 3.0])
    assert out["ratio_seed_over_ours"] == {"median": 2.0, "min": 1.0, "max": 3.0, "n": 3}
    assert out["ours"]["median"] == 3.0 and out["seed"]["median"] == 4.0
    with pytest.raises(ValueError):
        paired(seed=[1.0], ours=[1.0, 2.0])


def test_both_pods_differ_only_in_who_writes_the_init_container() -> None:
    ours = manifest("ours", "o", "https://h/p.tar.gz", "ab" * 32)
    seed = manifest("seed", "s", "https://h/p.tar.gz", "ab" * 32)
    assert "initContainers" not in ours["spec"] and ours["metadata"]["annotations"]["package-url"]
    assert seed["metadata"]["annotations"] == {}
    (init,) = seed["spec"]["initContainers"]
    # The chart's defaults for ours: the same QoS class and CPU shares for both.
    assert init["resources"] == {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}}
    assert init["imagePullPolicy"] == "IfNotPresent" and init["securityContext"]["runAsUser"] == 65532
    assert "--cacert /ca/ca.crt" in init["command"][-1] and "tar -xf package.tar" in init["command"][-1]
    assert ours["spec"]["containers"][0]["image"] == seed["spec"]["containers"][0]["image"]


def test_a_webhook_that_injects_other_resources_stops_the_bench() -> None:
    seed = manifest("seed", "s", "https://h/p.tar.gz", "ab" * 32)["spec"]["initContainers"][0]
    same_as_seed(seed)
    other = {**seed, "resources": {"requests": {"cpu": "1"}}}
    with pytest.raises(SystemExit, match="update INIT_RESOURCES"):
        same_as_seed(other)
