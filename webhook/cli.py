"""`package-injector`: serve the webhook, inject manifests offline, make certificates, check a setup.

`inject` is the offline twin of the webhook (like `istioctl kube-inject`): the
same pure function, so what it prints is what the cluster would store. Unlike
the webhook it also injects the pod templates of workloads, for GitOps flows
that want the injected manifest in the repository.
"""

from __future__ import annotations

import argparse
import copy
import importlib
import itertools
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

from pydantic import ValidationError

from webhook import __version__, limits, roundtrip, workloads
from webhook.inject import Denied, inject
from webhook.manifests import ManifestError, Source, read_sources
from webhook.patch import make_patch
from webhook.settings import Settings, SettingsError, load_settings_or_explain

# 128 + SIGPIPE, what a shell reports for a command that stopped on a closed pipe.
EXIT_BROKEN_PIPE = 141

# Subcommands implemented in their own modules: each has add_arguments(parser) and run(args) -> int.
DELEGATED = {
    "certs": "create a CA and serving certificate for the webhook",
    "check": "check a running installation in the current cluster",
    "explain": "say whether a Pod or workload was or would be injected, and if not, why and what to change",
}


@dataclass
class InjectReport:
    """Warnings collected while injecting a stream of documents; a denial stops the run."""

    warnings: list[str] = field(default_factory=list)


def _describe(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    assert isinstance(meta, dict)
    name = meta.get("name") or (f"{meta['generateName']}*" if meta.get("generateName") else "<unnamed>")
    return f"{obj.get('kind', '<no kind>')}/{name}"


def inject_document(obj: Any, settings: Settings, namespace: str | None, report: InjectReport) -> Any:
    """The injected copy of one document: Pods and workload templates injected, Lists recursed,
    anything else returned as it is. Raises Denied with the object named in the message."""
    if not isinstance(obj, dict):
        return obj
    kind = obj.get("kind")
    if kind == "List" and isinstance(obj.get("items"), list):
        return {**obj, "items": [inject_document(i, settings, namespace, report) for i in obj["items"]]}
    ns = namespace or (obj.get("metadata") or {}).get("namespace")
    where = _describe(obj)
    try:
        if kind == "Pod":
            result = inject(obj, settings, ns)
            report.warnings += [f"{where}: {w}" for w in result.warnings]
            return result.pod
        if isinstance(kind, str) and workloads.is_workload(kind):
            template = workloads.pod_template(obj)
            report.warnings += [
                f"{where}: {w}" for w in workloads.misplaced_warnings(obj, template, settings)
            ]
            if template is None:
                return obj
            result = inject(template, settings, ns)
            report.warnings += [f"{where}: {w}" for w in result.warnings]
            if not result.changed:
                return obj
            out = copy.deepcopy(obj)
            out_template = workloads.pod_template(out)
            assert out_template is not None
            out_template.clear()
            out_template.update(result.pod)
            return out
    except Denied as denied:
        report.warnings += [f"{where}: {w}" for w in denied.warnings]
        # Named before the prefix, as kubectl names the object before the webhook's message.
        denied.message = f"{where}: {denied.message}"
        denied.warnings = ()
        raise
    return obj


def _guess_indent(text: str) -> tuple[int, int]:
    """(mapping indent, dash offset) of the first nested mapping and sequence in `text`, so the output
    keeps the file's own style (`- name` flush with its key, or indented)."""
    mapping, offset = 0, -1
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    for above, line in itertools.pairwise(lines):
        if not above.rstrip().endswith(":") or above.lstrip().startswith("- "):
            continue
        step = (len(line) - len(line.lstrip())) - (len(above) - len(above.lstrip()))
        if line.lstrip().startswith("- "):
            if offset < 0 and step >= 0:
                offset = step
        elif mapping == 0 and step > 0:
            mapping = step
        if mapping and offset >= 0:
            break
    return mapping or 2, max(offset, 0)


def run_inject(
    stream: TextIO | list[Source], out: TextIO, err: TextIO, settings: Settings, namespace: str | None
) -> int:
    """Read multi-document YAML, write the injected YAML; 1 on a denial, 2 on unreadable input (not YAML,
    or past a cap of `webhook.limits`).

    Documents are edited in place (webhook.roundtrip): comments, quoting and block scalars stay as written.
    Nothing is written unless every document of every source was injected.
    """
    sources = [Source("<stdin>", stream.read())] if not isinstance(stream, list) else stream
    loaded: list[tuple[Source, list[tuple[Any, Any]]]] = []
    for source in sources:
        try:
            docs = roundtrip.load_all(source.text)
            pairs = [(doc, roundtrip.plain(doc)) for doc in docs]
        except (roundtrip.YAMLError, ValueError) as exc:  # ValueError: an impossible date
            print(f"error: {source.name} is not valid YAML: {exc}", file=err)
            return 2
        except RecursionError:
            print(
                f"error: {source.name} is nested too deeply (the limit is {limits.MAX_DEPTH} levels)",
                file=err,
            )
            return 2
        for number, (_, document) in enumerate(pairs, 1):
            try:
                # The webhook's caps on a review's shape; strings too, as YAML can write any code point.
                limits.check_document(document, strings=True)
            except limits.TooComplex as exc:
                print(f"error: {source.name}: document {number} {exc}", file=err)
                return 2
        loaded.append((source, pairs))
    report = InjectReport()
    try:
        injected = []
        for source, pairs in loaded:
            edited = []
            for doc, before in pairs:
                after = inject_document(before, settings, namespace, report)
                edited.append(roundtrip.apply_patch(doc, make_patch(before, after)))
            injected.append((source, edited))
    except Denied as denied:
        for warning in report.warnings:
            print(f"warning: {warning}", file=err)
        print(f"error: {denied.message}", file=err)
        return 1
    for warning in report.warnings:
        print(f"warning: {warning}", file=err)
    several = sum(len(docs) for _, docs in injected) > 1
    for source, docs in injected:
        if docs:
            out.write(roundtrip.dump_all(docs, _guess_indent(source.text), explicit_start=several))
    return 0


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings_or_explain(args.config)


def _cmd_serve(args: argparse.Namespace) -> int:
    from webhook.server import serve  # the server pulls in uvicorn; only `serve` needs it

    serve(_settings(args))
    return 0


def _cmd_inject(args: argparse.Namespace) -> int:
    settings = _inject_settings(args)
    try:
        sources = read_sources(args.filename)
    except ManifestError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return run_inject(sources, sys.stdout, sys.stderr, settings, args.namespace)


def _inject_settings(args: argparse.Namespace) -> Settings:
    """--config, or the running webhook's settings with --cluster-settings, or defaults and variables."""
    if not args.cluster_settings:
        return _settings(args)
    if args.config:
        raise SettingsError("--config and --cluster-settings exclude each other")
    from webhook.clusterapi import ApiError, cluster_settings, connect

    try:
        kube = connect(args.kubeconfig, args.context)
        settings, where = cluster_settings(kube, args.name)
    except (LookupError, ApiError) as exc:
        raise SettingsError(f"cannot read the cluster's settings: {exc}") from None
    except ValidationError as exc:
        raise SettingsError(f"the cluster's settings are invalid: {exc}") from None
    print(f"using the settings of {where} ({kube.where})", file=sys.stderr)
    return settings


def _add_delegated(sub: Any, name: str, help_text: str) -> None:
    """Register `name` from module webhook.<name>, or a stub explaining it is not available."""
    parser = sub.add_parser(name, help=help_text, description=help_text)
    try:
        module = importlib.import_module(f"webhook.{name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"webhook.{name}":
            raise
        missing = str(exc)

        def unavailable(_: argparse.Namespace) -> int:
            print(f"error: '{name}' is not available in this build ({missing})", file=sys.stderr)
            return 2

        parser.set_defaults(func=unavailable)
        return
    module.add_arguments(parser)
    run: Callable[[argparse.Namespace], int] = module.run
    parser.set_defaults(func=run)


def build_parser() -> argparse.ArgumentParser:
    """The `package-injector` command line."""
    parser = argparse.ArgumentParser(
        prog="package-injector",
        description="Kubernetes admission webhook that delivers a package into Pods annotated package-url.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the admission webhook over HTTPS")
    serve.add_argument(
        "--config", metavar="FILE", help="YAML or JSON settings file (environment variables win)"
    )
    serve.set_defaults(func=_cmd_serve)

    inj = sub.add_parser(
        "inject",
        help="inject Pods and workload templates in YAML offline (like istioctl kube-inject)",
        description="Read Pods, Deployments, StatefulSets, DaemonSets, ReplicaSets, Jobs, CronJobs and Lists "
        "as multi-document YAML; write them injected to stdout and warnings to stderr. Exit 1 when an "
        "annotation is invalid, with the message the webhook would give.",
    )
    inj.add_argument(
        "-f",
        "--filename",
        required=True,
        action="append",
        metavar="FILE",
        help="manifest file or directory (its .yaml, .yml, .json files), or - for stdin; repeatable",
    )
    inj.add_argument(
        "--config", metavar="FILE", help="YAML or JSON settings file (environment variables win)"
    )
    inj.add_argument(
        "--cluster-settings",
        action="store_true",
        help="use the settings the cluster's webhook runs with (its ConfigMap, via the kubeconfig)",
    )
    inj.add_argument("--kubeconfig", help="with --cluster-settings: kubeconfig file (default: kubectl's)")
    inj.add_argument("--context", help="with --cluster-settings: kubeconfig context")
    inj.add_argument(
        "--name", default="package-injector", help="with --cluster-settings: MutatingWebhookConfiguration"
    )
    inj.add_argument("--namespace", "-n", metavar="NS", help="namespace the objects will be created in")
    inj.set_defaults(func=_cmd_inject)

    for name, help_text in DELEGATED.items():
        _add_delegated(sub, name, help_text)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `package-injector` script and `python -m webhook`."""
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
        sys.stdout.flush()
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader went away (`| head`): not an error of ours. Point stdout at /dev/null so the
        # interpreter's final flush does not raise again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    return code


if __name__ == "__main__":
    sys.exit(main())
