"""`package-injector explain` offline: manifests against the chart's rendered webhook configuration.

The configuration comes from the chart itself (rendered by helm-python-sdk), so the selectors and the CEL
evaluated here are the ones a cluster would get. Live objects are tested in tests/e2e/test_explain.py.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart.helpers import one, render
from webhook import explain
from webhook.settings import Settings

URL = "https://packages.example.com/app.tar.gz"


def mwc_file(tmp_path: Path, values: dict[str, Any] | None = None) -> Path:
    """The chart's MutatingWebhookConfiguration, rendered for the oldest supported cluster (1.34)."""
    docs = render({"kubeVersionOverride": "1.34.0", **(values or {})})
    path = tmp_path / "mwc.yaml"
    path.write_text(yaml.safe_dump(one(docs, "MutatingWebhookConfiguration")))
    return path


def pod(annotations: dict[str, str] | None = None, labels: dict[str, str] | None = None, **meta: Any) -> Any:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web", "annotations": annotations or {}, "labels": labels or {}, **meta},
        "spec": {"containers": [{"name": "app", "image": "nginx"}]},
    }


def deployment(own: dict[str, str], template: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "annotations": own},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}, "annotations": template},
                "spec": {"containers": [{"name": "app", "image": "nginx"}]},
            },
        },
    }


def run(tmp_path: Path, capsys: pytest.CaptureFixture[str], docs: list[Any], *argv: str) -> tuple[int, str]:
    manifest = tmp_path / "in.yaml"
    manifest.write_text(yaml.safe_dump_all(docs))
    parser = argparse.ArgumentParser()
    explain.add_arguments(parser)
    args = parser.parse_args(["--offline", "-f", str(manifest), *argv])
    code = explain.run(args)
    return code, capsys.readouterr().out


def lines(out: str, status: str) -> list[str]:
    return [line.strip() for line in out.splitlines() if line.strip().startswith(status)]


def test_an_annotated_pod_would_be_injected(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(
        tmp_path, capsys, [pod({"package-url": URL})], "--webhook-config", str(mwc_file(tmp_path))
    )
    assert code == 0, out
    assert "Pod default/web: it would be injected" in out
    assert not lines(out, "FAIL")
    passed = "\n".join(lines(out, "PASS"))
    for step in ("webhook decision", "namespace", "object selector", "matchConditions"):
        assert step in passed


def test_a_pod_with_only_named_packages_passes_the_charts_match_conditions(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The chart's CEL lets `package-url.NAME` through as well as `package-url` (cel-python evaluates it)."""
    manifest = pod({"package-url.tools": URL, "package-url-not-ours": "x"})
    code, out = run(tmp_path, capsys, [manifest], "--webhook-config", str(mwc_file(tmp_path)))
    assert code == 0, out
    assert any("matchConditions" in line and "is true" in line for line in lines(out, "PASS")), out
    code, out = run(
        tmp_path, capsys, [pod({"package-url-x": URL})], "--webhook-config", str(mwc_file(tmp_path))
    )
    assert any("matchConditions" in line and "is false" in line for line in lines(out, "FAIL")), out


def test_evaluating_match_conditions_leaves_the_recursion_limit_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """cel-python raises the process's recursion limit; explain puts it back (json.loads' depth refusal and
    the fuzz test's in-process answers depend on it)."""
    before = sys.getrecursionlimit()
    code, out = run(
        tmp_path, capsys, [pod({"package-url": URL})], "--webhook-config", str(mwc_file(tmp_path))
    )
    assert code == 0 and "matchConditions" in "\n".join(lines(out, "PASS")), out
    assert sys.getrecursionlimit() == before


def test_annotation_on_the_workload_instead_of_its_template(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = run(
        tmp_path, capsys, [deployment({"package-url": URL}, {})], "--webhook-config", str(mwc_file(tmp_path))
    )
    assert code == 1
    assert "Deployment default/web: its Pods would NOT be injected" in out
    assert "package-url on the Deployment's own metadata does nothing" in out
    assert "fix: move the annotations to spec.template.metadata.annotations" in out
    # The chart's CEL, evaluated on the Pod the template makes, agrees: the webhook is not even called.
    assert any("matchConditions" in line and "is false" in line for line in lines(out, "FAIL"))


def test_a_misspelt_key_is_named_with_the_right_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = run(tmp_path, capsys, [pod({"package_url": URL})])
    assert code == 1
    assert (
        'annotation "package_url" is not a package-injector key and is ignored; did you mean "package-url"?'
        in out
    )
    assert "fix: rename the key as suggested" in out


def test_a_denied_value_gives_the_webhooks_own_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = run(tmp_path, capsys, [pod({"package-url": "http://packages.example.com/a.tar"})])
    assert code == 1
    (denied,) = [line for line in lines(out, "FAIL") if "webhook decision" in line]
    assert "denied (403)" in denied and "http:// is not allowed in this cluster" in denied


def test_the_cluster_settings_file_changes_the_decision(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("allowed_schemes: [https, http]\n")
    code, out = run(
        tmp_path, capsys, [pod({"package-url": "http://packages.example.com/a.tar"})], "--config", str(config)
    )
    assert code == 0, out
    assert 'has no "package-sha256": the package is unverified (plain http:' in "\n".join(lines(out, "WARN"))


def test_an_excluded_namespace(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    mwc = mwc_file(tmp_path, {"webhook": {"excludeNamespaces": ["legacy"]}})
    code, out = run(
        tmp_path, capsys, [pod({"package-url": URL})], "-n", "legacy", "--webhook-config", str(mwc)
    )
    assert code == 1
    (line,) = [line for line in lines(out, "FAIL") if "namespace" in line]
    assert "excludes namespace legacy (kubernetes.io/metadata.name NotIn" in line


def test_opt_in_namespace_not_labelled_gets_the_kubectl_label_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mwc = mwc_file(tmp_path, {"webhook": {"optIn": True}})
    code, out = run(
        tmp_path,
        capsys,
        [pod({"package-url": URL})],
        "-n",
        "team",
        "--webhook-config",
        str(mwc),
        "--namespace-label",
        "owner=team",
    )
    assert code == 1
    assert "needs package-injector.dev/injection In (enabled)" in out
    assert "fix: kubectl label namespace team package-injector.dev/injection=enabled --overwrite" in out


def test_object_selector_opt_out_label(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    opted_out = pod({"package-url": URL}, {"package-injector.dev/injection": "disabled"})
    code, out = run(tmp_path, capsys, [opted_out], "--webhook-config", str(mwc_file(tmp_path)))
    assert code == 1
    (line,) = [line for line in lines(out, "FAIL") if "object selector" in line]
    assert "package-injector.dev/injection NotIn (disabled)" in line


def test_without_a_configuration_it_says_what_it_did_not_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = run(tmp_path, capsys, [pod({"package-url": URL, "package-secret": "creds"})])
    assert code == 0
    infos = "\n".join(lines(out, "INFO"))
    assert "webhook configuration: not checked" in infos
    assert "Secret creds" in infos and "not checked offline" in infos
    assert out.splitlines()[0].startswith("cluster: none (offline")


def test_named_packages_secrets_are_listed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    annotations = {"package-url": URL, "package-url.tools": URL, "package-secret.tools": "tools-creds"}
    code, out = run(tmp_path, capsys, [pod(annotations)])
    assert code == 0
    (line,) = [line for line in lines(out, "INFO") if "tools-creds" in line]
    assert '"package-secret.tools"' in line and "not checked offline" in line


def test_several_files_a_directory_and_other_kinds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "a.yaml").write_text(yaml.safe_dump(pod({"package-url": URL}, name="a")))
    (tmp_path / "dir" / "b.yml").write_text(
        yaml.safe_dump({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}})
    )
    (tmp_path / "dir" / "notes.txt").write_text("not a manifest")
    other = tmp_path / "c.yaml"
    other.write_text(yaml.safe_dump(pod({}, name="c")))
    parser = argparse.ArgumentParser()
    explain.add_arguments(parser)
    code = explain.run(parser.parse_args(["--offline", "-f", str(tmp_path / "dir"), "-f", str(other)]))
    out = capsys.readouterr().out
    assert code == 1
    assert "Pod default/a: it would be injected" in out
    assert "Pod default/c: it would NOT be injected" in out
    assert "not Pods or workloads (never injected): Service/s" in out


def test_a_condition_that_cannot_be_evaluated_follows_failure_policy() -> None:
    hook = {
        "name": "pods.x",
        "failurePolicy": "Ignore",
        "rules": [{"apiGroups": [""], "resources": ["pods"]}],
        "matchConditions": [{"name": "bad", "expression": "object.spec.nothing == 1"}],
    }
    ctx = explain.Context(Settings(), [hook], lambda ns: {"kubernetes.io/metadata.name": ns}, None)
    result = explain.explain_object(pod({"package-url": URL}), ctx, None)
    assert result is not None
    (warn,) = [f for f in result.findings if f.step == "matchConditions"]
    assert warn.status == "WARN" and "failurePolicy Ignore applies" in warn.detail


@pytest.mark.parametrize(
    ("selector", "labels", "unmet"),
    [
        (None, {}, 0),
        ({"matchLabels": {"a": "1"}}, {"a": "1"}, 0),
        ({"matchLabels": {"a": "1"}}, {"a": "2"}, 1),
        ({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["x"]}]}, {}, 0),
        ({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["x"]}]}, {"a": "x"}, 1),
        ({"matchExpressions": [{"key": "a", "operator": "In", "values": ["x"]}]}, {}, 1),
        ({"matchExpressions": [{"key": "a", "operator": "Exists"}]}, {"a": ""}, 0),
        ({"matchExpressions": [{"key": "a", "operator": "DoesNotExist"}]}, {"a": ""}, 1),
    ],
)
def test_label_selector_semantics(selector: Any, labels: dict[str, str], unmet: int) -> None:
    assert len(explain.unmet_requirements(selector, labels)) == unmet


def test_usage_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    explain.add_arguments(parser)
    assert explain.run(parser.parse_args(["--offline"])) == 2
    assert explain.run(parser.parse_args(["--offline", "-f", str(tmp_path / "missing.yaml")])) == 2
    assert "cannot read" in capsys.readouterr().err
    assert explain.run(parser.parse_args(["--offline", "frobnicator/x"])) == 2


def test_registered_in_the_cli(capsys: pytest.CaptureFixture[str]) -> None:
    from webhook.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["explain", "--help"])
    assert exit_info.value.code == 0
    assert "--webhook-config" in capsys.readouterr().out
