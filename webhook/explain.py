"""`package-injector explain`: was, or would, a Pod or workload get its package, and if not, why.

Each step asks what the real decision-maker would answer, with its own rules: the apiserver's selection
of the webhook (the MutatingWebhookConfiguration's namespaceSelector, objectSelector and matchConditions,
read from the cluster or a rendered file; the CEL is evaluated with cel-python when installed), then the
webhook's pure `inject` function with the cluster's settings (typos, denied values, conflicts), then what
the kubelet will need (the `package-secret` Secret, the init image's pull secrets). Every line that stops
injection says what to change. Offline (manifest files, no kubeconfig) the namespace's labels and the
Secrets are unknown: it says so instead of guessing.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import yaml

from initcontainer import contract
from webhook import annotations as ann
from webhook import workloads
from webhook.check import handles_pods
from webhook.clusterapi import (
    DEFAULT_CONFIGURATION,
    ApiError,
    Kube,
    cluster_settings,
    connect,
    default_kubeconfig,
    resource_path,
    webhook_configuration,
)
from webhook.inject import Denied, inject
from webhook.manifests import ManifestError, read_sources
from webhook.settings import Settings, SettingsError, load_settings_or_explain

Status = Literal["PASS", "WARN", "FAIL", "INFO"]
NAME_LABEL: Final = "kubernetes.io/metadata.name"
EXIT_INJECTED: Final = 0
EXIT_NOT_INJECTED: Final = 1
EXIT_USAGE: Final = 2

# What users type after `explain` for live objects (kubectl's names and short names).
KIND_ALIASES: Final = {
    alias: kind
    for kind, aliases in {
        "Pod": ("pod", "pods", "po"),
        "Deployment": ("deployment", "deployments", "deploy"),
        "StatefulSet": ("statefulset", "statefulsets", "sts"),
        "DaemonSet": ("daemonset", "daemonsets", "ds"),
        "ReplicaSet": ("replicaset", "replicasets", "rs"),
        "Job": ("job", "jobs"),
        "CronJob": ("cronjob", "cronjobs", "cj"),
    }.items()
    for alias in aliases
}


@dataclass(frozen=True)
class Finding:
    """One line: PASS (lets injection happen), FAIL (prevents it), WARN or INFO, and the fix for a FAIL."""

    status: Status
    step: str
    detail: str
    fix: str = ""

    def lines(self) -> list[str]:
        out = [f"  {self.status:<4}  {self.step}: {self.detail}"]
        if self.fix:
            out.append(f"        fix: {self.fix}")
        return out


@dataclass
class Explanation:
    """The findings for one object and its verdict."""

    subject: str
    live: bool
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(f.status == "FAIL" for f in self.findings)

    def add(self, status: Status, step: str, detail: str, fix: str = "") -> None:
        self.findings.append(Finding(status, step, detail, fix))

    def render(self) -> str:
        pods = "it" if self.subject.startswith("Pod ") else "its Pods"
        if self.live and self.subject.startswith("Pod "):
            verdict = "was injected" if self.ok else "was NOT injected, or will not start"
        else:
            verdict = "would be injected" if self.ok else "would NOT be injected"
        lines = [f"{self.subject}: {pods} {verdict}"]
        for finding in self.findings:
            lines += finding.lines()
        return "\n".join(lines)


@dataclass(frozen=True)
class Context:
    """What the explanation is measured against; None where it is unknown (offline)."""

    settings: Settings
    webhooks: list[dict[str, Any]] | None
    namespace_labels: Callable[[str], dict[str, str] | None]
    kube: Kube | None
    failure_policy_default: str = "Fail"


# --- label selectors (Kubernetes semantics) ---------------------------------------------------------------


def unmet_requirements(selector: dict[str, Any] | None, labels: dict[str, str]) -> list[dict[str, Any]]:
    """The requirements of a LabelSelector that `labels` fail, as matchExpressions (empty: it matches)."""
    selector = selector or {}
    unmet: list[dict[str, Any]] = []
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            unmet.append({"key": key, "operator": "In", "values": [value]})
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        present = key in labels
        ok = {
            "In": present and labels.get(key) in values,
            "NotIn": not present or labels.get(key) not in values,
            "Exists": present,
            "DoesNotExist": not present,
        }.get(str(op), False)
        if not ok:
            unmet.append(expr)
    return unmet


def _describe_requirement(expr: dict[str, Any]) -> str:
    values = ", ".join(expr.get("values") or [])
    op = expr.get("operator")
    return f"{expr.get('key')} {op}" + (f" ({values})" if values else "")


def _label_fix(expr: dict[str, Any], command: str, labels: dict[str, str]) -> str:
    """How to satisfy one requirement, as a kubectl label command (or a sentence when none fits)."""
    key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
    if op == "In":
        return f"{command} {key}={values[0]} --overwrite"
    if op == "Exists":
        return f"{command} {key}=<value>"
    return f"{command} {key}-   (it is {key}={labels.get(str(key), '')})"


# --- the steps ----------------------------------------------------------------------------------------


def _as_pod(obj: dict[str, Any], template: dict[str, Any], namespace: str) -> dict[str, Any]:
    """The Pod the apiserver will see for a workload's template: the selectors and CEL run against it."""
    metadata = dict(template.get("metadata") or {})
    metadata["namespace"] = namespace
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": template.get("spec") or {}}


def _selection(pod: dict[str, Any], namespace: str, ctx: Context, out: Explanation, where: str) -> None:
    """Would the apiserver call the webhook for this Pod: rules, namespaceSelector, objectSelector, CEL."""
    if ctx.webhooks is None:
        out.add(
            "INFO",
            "webhook configuration",
            "not checked: give --kubeconfig (the live MutatingWebhookConfiguration) or --webhook-config FILE "
            "(e.g. `helm template` output)",
        )
        return
    pod_hooks = [w for w in ctx.webhooks if handles_pods(w)]
    if not pod_hooks:
        out.add(
            "FAIL",
            "webhook configuration",
            "no webhook of the configuration handles pods",
            "reinstall the chart (helm upgrade --install) or apply deploy/",
        )
        return
    labels_of_pod = (pod.get("metadata") or {}).get("labels") or {}
    for hook in pod_hooks:
        name = hook.get("name", "?")
        ns_labels = ctx.namespace_labels(namespace)
        if ns_labels is None:
            out.add("INFO", "namespace", f"labels of namespace {namespace} unknown offline; assumed none")
            ns_labels = {NAME_LABEL: namespace}
        unmet = unmet_requirements(hook.get("namespaceSelector"), ns_labels)
        for expr in unmet:
            if expr.get("key") == NAME_LABEL:
                out.add(
                    "FAIL",
                    "namespace",
                    f"{name} excludes namespace {namespace} ({_describe_requirement(expr)})",
                    "create it in another namespace (the chart excludes system namespaces, its own and "
                    "webhook.excludeNamespaces)",
                )
            else:
                out.add(
                    "FAIL",
                    "namespace",
                    f"{name} does not select namespace {namespace}: needs {_describe_requirement(expr)}",
                    _label_fix(expr, f"kubectl label namespace {namespace}", ns_labels),
                )
        if not unmet:
            out.add("PASS", "namespace", f"{name} selects namespace {namespace}")
        unmet = unmet_requirements(hook.get("objectSelector"), labels_of_pod)
        for expr in unmet:
            out.add(
                "FAIL",
                "object selector",
                f"{name} skips this Pod: its labels fail {_describe_requirement(expr)}",
                f"change the label {expr.get('key')} in {where}metadata.labels",
            )
        if not unmet:
            out.add("PASS", "object selector", f"{name} selects the Pod's labels")
        _match_conditions(hook, pod, out)


def _match_conditions(hook: dict[str, Any], pod: dict[str, Any], out: Explanation) -> None:
    """Evaluate the webhook's matchConditions on the Pod as the apiserver would (variable `object`)."""
    conditions = hook.get("matchConditions") or []
    if not conditions:
        return
    try:
        import celpy
    except ImportError:
        out.add(
            "INFO",
            "matchConditions",
            "not evaluated: cel-python is not installed (pip install 'package-injector[explain]')",
        )
        return
    # celpy.Environment() raises the process's recursion limit for its parser; it is put back after the
    # evaluation, so nothing else in this process (json.loads' depth refusal, for one) behaves differently.
    limit = sys.getrecursionlimit()
    try:
        env = celpy.Environment()
        activation = {"object": celpy.adapter.json_to_cel(pod)}
        values: list[Any] = []
        for condition in conditions:
            try:
                values.append(
                    env.program(env.compile(str(condition.get("expression", "")))).evaluate(activation)
                )
            except Exception as exc:  # a compile or evaluation error: the apiserver applies failurePolicy
                values.append(exc)
    finally:
        sys.setrecursionlimit(limit)
    name = hook.get("name", "?")
    for condition, value in zip(conditions, values, strict=True):
        expression = str(condition.get("expression", ""))
        if isinstance(value, Exception):
            policy = hook.get("failurePolicy", "Fail")
            out.add(
                "FAIL" if policy == "Fail" else "WARN",
                "matchConditions",
                f"{name} condition {condition.get('name')} cannot be evaluated ({value}); "
                f"failurePolicy {policy} applies",
            )
        elif not bool(value):
            out.add(
                "FAIL",
                "matchConditions",
                f"{name} condition {condition.get('name')} is false, so the webhook is not called: "
                f"{expression}",
                "put the annotation on the Pod's own metadata.annotations (a workload: its pod template's), "
                "spelt exactly as in the condition",
            )
        else:
            out.add("PASS", "matchConditions", f"{name} condition {condition.get('name')} is true")


def _annotations(
    obj: dict[str, Any], pod: dict[str, Any], namespace: str, ctx: Context, out: Explanation, where: str
) -> ann.PackageRequest | None:
    """The webhook's own decision (the same `inject`), the misplaced-annotation check, and whether a live
    Pod carries what the webhook injects."""
    if obj is not pod:
        template = workloads.pod_template(obj)
        for warning in workloads.misplaced_warnings(obj, template, ctx.settings):
            out.add(
                "FAIL",
                "annotations",
                warning.removeprefix("package-injector: "),
                f"move the annotations to {where}metadata.annotations",
            )
    trigger = ctx.settings.key(ann.URL)
    try:
        result = inject(pod, ctx.settings, namespace)
    except Denied as denied:
        for warning in denied.warnings:
            text = warning.removeprefix("package-injector: ")
            out.add(
                "WARN", "annotations", text, "rename the key as suggested" if "did you mean" in text else ""
            )
        out.add(
            "FAIL",
            "webhook decision",
            f"denied ({denied.code}): {denied.message.removeprefix('package-injector: ')}",
            "correct the annotation values named above; `package-injector inject -f FILE` shows the result",
        )
        return None
    for warning in result.warnings:
        text = warning.removeprefix("package-injector: ")
        typo = "did you mean" in text or "is not a package-injector key" in text
        fix = "rename the key as suggested" if "did you mean" in text else ""
        out.add("FAIL" if typo and not result.requested else "WARN", "annotations", text, fix)
    if not result.requested:
        out.add(
            "FAIL",
            "annotations",
            f'no "{trigger}" annotation on {where}metadata.annotations: nothing is requested',
            f'add {where}metadata.annotations."{trigger}": https://HOST/PATH/package.tar.gz',
        )
        return None
    out.add("PASS", "webhook decision", f'"{trigger}" is set and every value is accepted')
    if out.live and obj is pod:
        if result.changed:
            out.add(
                "FAIL",
                "live Pod",
                f"the Pod has no {contract.INIT_CONTAINER_NAME} init container: it was created before the "
                "webhook was installed, or the webhook was not called (see the lines above) or failed open "
                "(failurePolicy Ignore)",
                "fix the cause, then delete the Pod so its controller creates it again",
            )
        else:
            out.add("PASS", "live Pod", f"carries the {contract.INIT_CONTAINER_NAME} init container")
    return ann.parse((pod.get("metadata") or {}).get("annotations"), ctx.settings, namespace).request


def _secrets(request: ann.PackageRequest, namespace: str, ctx: Context, out: Explanation) -> None:
    """Secrets the kubelet needs: without them the Pod sticks in ContainerCreating or ImagePullBackOff."""
    wanted: list[tuple[str, str, str]] = []
    secrets = [(request.secret, ctx.settings.key(ann.SECRET))] if request.secret else []
    secrets += [(p.secret, f"{ctx.settings.key(ann.SECRET)}.{p.name}") for p in request.packages if p.secret]
    for secret, key in secrets:
        wanted.append(
            (
                secret,
                f'"{key}"',
                f"kubectl create secret generic {secret} -n {namespace} "
                f"--from-file={contract.CREDENTIAL_TOKEN}=./token  "
                f"(or {contract.CREDENTIAL_USERNAME} and {contract.CREDENTIAL_PASSWORD})",
            )
        )
    for name in ctx.settings.init_image_pull_secrets:
        wanted.append(
            (
                name,
                "the init image's pull secret (setting init_image_pull_secrets)",
                f"kubectl create secret docker-registry {name} -n {namespace} --docker-server=REGISTRY "
                "--docker-username=USER --docker-password=...",
            )
        )
    for name, role, fix in wanted:
        if ctx.kube is None:
            out.add(
                "INFO", "secret", f"Secret {name} ({role}) must exist in {namespace}; not checked offline"
            )
            continue
        try:
            found = ctx.kube.get(resource_path("Secret", namespace, name), metadata_only=True)
        except ApiError as exc:
            out.add("WARN", "secret", f"cannot check Secret {namespace}/{name} ({role}): {exc}")
            continue
        if found is None:
            out.add("FAIL", "secret", f"Secret {name} ({role}) does not exist in namespace {namespace}", fix)
        else:
            out.add("PASS", "secret", f"Secret {namespace}/{name} ({role}) exists")


def explain_object(
    obj: dict[str, Any], ctx: Context, namespace: str | None, live: bool = False
) -> Explanation | None:
    """The explanation for one Pod or workload; None for other kinds (nothing to inject)."""
    kind = str(obj.get("kind") or "")
    meta = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    assert isinstance(meta, dict)
    ns = namespace or meta.get("namespace") or "default"
    name = meta.get("name") or (f"{meta['generateName']}*" if meta.get("generateName") else "<unnamed>")
    if kind == "Pod":
        pod, where = obj, ""
    elif workloads.is_workload(kind):
        template = workloads.pod_template(obj)
        where = ".".join(workloads.WORKLOADS[kind][1]) + "."
        out = Explanation(f"{kind} {ns}/{name}", live)
        if template is None:
            out.add("FAIL", "pod template", f"{kind} has no {where.rstrip('.')}", "fix the manifest")
            return out
        pod = _as_pod(obj, template, ns)
    else:
        return None
    out = Explanation(f"{kind} {ns}/{name}", live)
    request = _annotations(obj, pod, ns, ctx, out, where)
    _selection(pod, ns, ctx, out, where)
    if request is not None:
        _secrets(request, ns, ctx, out)
    return out


# --- input ----------------------------------------------------------------------------------------------


def documents(text: str, source: str) -> Iterator[dict[str, Any]]:
    """The objects of a YAML stream, Lists flattened."""
    try:
        loaded = list(yaml.safe_load_all(text))
    except yaml.YAMLError as exc:
        raise ManifestError(f"{source}: not valid YAML: {exc}") from None
    for doc in loaded:
        if isinstance(doc, dict) and doc.get("kind") == "List" and isinstance(doc.get("items"), list):
            yield from (i for i in doc["items"] if isinstance(i, dict))
        elif isinstance(doc, dict):
            yield doc


def parse_target(target: str) -> tuple[str, str]:
    """`deploy/web` -> ("Deployment", "web")."""
    kind, sep, name = target.partition("/")
    if not sep or not name or kind.lower() not in KIND_ALIASES:
        raise ManifestError(
            f"{target!r}: name a live object as KIND/NAME, KIND one of pod, deployment, statefulset, "
            "daemonset, replicaset, job, cronjob"
        )
    return KIND_ALIASES[kind.lower()], name


def live_object(kube: Kube, kind: str, namespace: str, name: str) -> dict[str, Any]:
    """GET the object at the API version the chart's configuration reviews (CronJob: batch/v1)."""
    obj = kube.get(resource_path(kind, namespace, name))
    if obj is None:
        raise ManifestError(f"{kind} {namespace}/{name} not found")
    obj.setdefault("kind", kind)
    return obj


def _load_webhooks(path: str) -> list[dict[str, Any]]:
    sources = read_sources([path])
    for doc in documents(sources[0].text, path):
        if doc.get("kind") == "MutatingWebhookConfiguration":
            hooks: list[dict[str, Any]] = doc.get("webhooks") or []
            return hooks
    raise ManifestError(f"{path}: no MutatingWebhookConfiguration in it")


def _namespace_labels(kube: Kube | None, extra: dict[str, str]) -> Callable[[str], dict[str, str] | None]:
    cache: dict[str, dict[str, str] | None] = {}

    def labels(namespace: str) -> dict[str, str] | None:
        if kube is None:
            return {NAME_LABEL: namespace, **extra} if extra else None
        if namespace not in cache:
            ns = kube.get(resource_path("Namespace", None, namespace))
            if ns is None:
                raise ManifestError(f"namespace {namespace} does not exist")
            cache[namespace] = (ns.get("metadata") or {}).get("labels") or {}
        return cache[namespace]

    return labels


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `package-injector explain`."""
    parser.add_argument(
        "targets", nargs="*", metavar="KIND/NAME", help="live objects, e.g. pod/web-0 deploy/web (kubeconfig)"
    )
    parser.add_argument(
        "-f", "--filename", action="append", default=[], metavar="FILE",
        help="manifest file or directory, or - for stdin (repeatable)",
    )  # fmt: skip
    parser.add_argument(
        "-n", "--namespace", metavar="NS", help="namespace (default: the object's, or default)"
    )
    parser.add_argument(
        "--kubeconfig",
        help="read the webhook configuration, namespaces, Secrets and settings from the cluster",
    )
    parser.add_argument("--context", help="kubeconfig context (default: the current one)")
    parser.add_argument(
        "--offline", action="store_true", help="never contact a cluster, even if ~/.kube/config exists"
    )
    parser.add_argument("--name", default=DEFAULT_CONFIGURATION, help="MutatingWebhookConfiguration name")
    parser.add_argument(
        "--webhook-config", metavar="FILE", help="a MutatingWebhookConfiguration manifest (offline)"
    )
    parser.add_argument("--config", metavar="FILE", help="webhook settings file (default: the cluster's)")
    parser.add_argument(
        "--settings-configmap",
        metavar="NS/NAME",
        help="the webhook's settings ConfigMap (default: found through the webhook configuration's Service)",
    )
    parser.add_argument(
        "--namespace-label", action="append", default=[], metavar="KEY=VALUE",
        help="offline: a label of the target namespace (repeatable)",
    )  # fmt: skip


def _context(args: argparse.Namespace) -> tuple[Context, list[str]]:
    """Settings, webhook configuration and cluster access, and lines saying where each came from."""
    notes: list[str] = []
    kube: Kube | None = None
    if args.offline and args.targets:
        raise ManifestError("live objects (KIND/NAME) need the cluster: drop --offline")
    if not args.offline and (args.kubeconfig or args.context or default_kubeconfig() or args.targets):
        try:
            kube = connect(args.kubeconfig, args.context)
        except Exception as exc:
            raise ManifestError(f"cannot load Kubernetes credentials: {exc}") from None
        notes.append(f"cluster: {kube.where}")
    else:
        notes.append("cluster: none (offline; --kubeconfig to read the live configuration)")
    if args.config:
        settings = load_settings_or_explain(args.config)
        notes.append(f"settings: {args.config}")
    elif kube is not None:
        try:
            settings, where = cluster_settings(kube, args.name, args.settings_configmap)
            notes.append(f"settings: {where}")
        except (LookupError, ApiError) as exc:
            if args.settings_configmap:
                raise ManifestError(f"cannot read the settings: {exc}") from None
            settings = load_settings_or_explain()
            notes.append(f"settings: defaults and PACKAGE_INJECTOR_* variables (cluster's unreadable: {exc})")
    else:
        settings = load_settings_or_explain()
        notes.append("settings: defaults and PACKAGE_INJECTOR_* variables (--config FILE for the cluster's)")
    webhooks: list[dict[str, Any]] | None = None
    if args.webhook_config:
        webhooks = _load_webhooks(args.webhook_config)
        notes.append(f"webhook configuration: {args.webhook_config}")
    elif kube is not None:
        mwc = webhook_configuration(kube, args.name)
        if mwc is None:
            raise ManifestError(
                f"MutatingWebhookConfiguration {args.name} not found: package-injector is not installed "
                "(or under another name: --name)"
            )
        webhooks = mwc.get("webhooks") or []
        notes.append(f"webhook configuration: MutatingWebhookConfiguration {args.name}")
    extra = dict(label.partition("=")[::2] for label in args.namespace_label)
    return Context(settings, webhooks, _namespace_labels(kube, extra), kube), notes


def run(args: argparse.Namespace) -> int:
    """Explain every object; 0 when all are (or would be) injected, 1 when one is not, 2 on bad input."""
    if not args.targets and not args.filename:
        print("error: name live objects (pod/NAME, deploy/NAME, ...) or manifests with -f", file=sys.stderr)
        return EXIT_USAGE
    try:
        targets = [parse_target(t) for t in args.targets]
        sources = read_sources(args.filename)
        ctx, notes = _context(args)
        explained: list[Explanation] = []
        skipped: list[str] = []
        for source in sources:
            for doc in documents(source.text, source.name):
                result = explain_object(doc, ctx, args.namespace)
                if result is None:
                    skipped.append(
                        f"{doc.get('kind', '<no kind>')}/{(doc.get('metadata') or {}).get('name')}"
                    )
                else:
                    explained.append(result)
        for kind, name in targets:
            assert ctx.kube is not None
            ns = args.namespace or "default"
            result = explain_object(live_object(ctx.kube, kind, ns, name), ctx, ns, live=True)
            assert result is not None
            explained.append(result)
    except (ManifestError, ApiError, SettingsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    for note in notes:
        print(note)
    for result in explained:
        print()
        print(result.render())
    if skipped:
        print(f"\nnot Pods or workloads (never injected): {', '.join(skipped)}")
    if not explained:
        print("\nno Pod or workload found in the input")
        return EXIT_NOT_INJECTED
    return EXIT_INJECTED if all(r.ok for r in explained) else EXIT_NOT_INJECTED
