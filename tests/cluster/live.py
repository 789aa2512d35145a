"""Talk to the one-node cluster of scripts/cluster.sh: kubectl and helm run inside its network namespace.

The cluster's addresses exist only in that namespace (CLUSTER_NETNS), so every client command is started
with `nsenter --net=/run/netns/NAME`; file paths stay those of this machine.
"""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = str(ROOT / "charts" / "package-injector")
# The webhook's own Pods (not the chart's helm test Pod), whether installed by helm or by deploy/.
WEBHOOK_PODS = "app.kubernetes.io/name=package-injector,app.kubernetes.io/component!=test"


class CommandError(RuntimeError):
    """A kubectl/helm command failed; carries its stderr for assertions on the user-visible message."""

    def __init__(self, args: list[str], proc: subprocess.CompletedProcess[str]) -> None:
        super().__init__(
            f"{' '.join(args)} -> {proc.returncode}\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
        )
        self.stdout = proc.stdout
        self.stderr = proc.stderr
        self.returncode = proc.returncode


@dataclass(frozen=True)
class Live:
    """A running cluster: its exports and the tools that talk to it."""

    kubeconfig: str
    host_ip: str
    netns: str
    kubectl_bin: str
    helm_bin: str
    version: str

    def in_netns(self, *args: str) -> list[str]:
        """argv that runs `args` in the cluster's network namespace."""
        return ["nsenter", f"--net=/run/netns/{self.netns}", "--", *args]

    def run(
        self, args: list[str], *, input: str | None = None, timeout: float = 120, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            self.in_netns(*args),
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={"KUBECONFIG": self.kubeconfig, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root"},
        )
        if check and proc.returncode != 0:
            raise CommandError(args, proc)
        return proc

    def kubectl(
        self, *args: str, input: str | None = None, timeout: float = 120, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return self.run([self.kubectl_bin, *args], input=input, timeout=timeout, check=check)

    def helm(self, *args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run([self.helm_bin, *args], timeout=timeout, check=check)

    def apply(self, *objects: dict[str, Any], namespace: str | None = None) -> None:
        """`kubectl apply -f -` of the objects (raises CommandError with the apiserver's message)."""
        ns = ["-n", namespace] if namespace else []
        self.kubectl("apply", *ns, "-f", "-", input=yaml.safe_dump_all(objects))

    def create(self, *objects: dict[str, Any], namespace: str | None = None) -> None:
        ns = ["-n", namespace] if namespace else []
        self.kubectl("create", *ns, "-f", "-", input=yaml.safe_dump_all(objects))

    def get(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any]:
        ns = ["-n", namespace] if namespace else []
        out: dict[str, Any] = json.loads(self.kubectl("get", kind, name, *ns, "-o", "json").stdout)
        return out

    def items(self, kind: str, namespace: str, selector: str = "") -> list[dict[str, Any]]:
        sel = ["-l", selector] if selector else []
        data = json.loads(self.kubectl("get", kind, "-n", namespace, *sel, "-o", "json").stdout)
        return list(data["items"])

    def exec(self, namespace: str, pod: str, container: str, *cmd: str, check: bool = True) -> str:
        return self.kubectl("exec", "-n", namespace, pod, "-c", container, "--", *cmd, check=check).stdout

    def wait_pod(
        self, namespace: str, name: str, cond: str = "Ready", timeout: float = 180
    ) -> dict[str, Any]:
        """Wait for a Pod condition, or fail with its status and events (what a user would look at)."""
        proc = self.kubectl(
            "wait",
            "-n",
            namespace,
            f"pod/{name}",
            f"--for=condition={cond}",
            f"--timeout={int(timeout)}s",
            timeout=timeout + 30,
            check=False,
        )
        if proc.returncode != 0:
            raise AssertionError(f"pod {namespace}/{name} not {cond}:\n{self.describe(namespace, name)}")
        return self.get("pod", name, namespace)

    def wait_for(self, what: str, probe: Any, timeout: float = 180, interval: float = 1.0) -> Any:
        """Poll `probe()` until it returns something truthy; fail naming `what` with its last value."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            last = probe()
            if last:
                return last
            time.sleep(interval)
        raise AssertionError(f"timed out waiting for {what}; last value: {last!r}")

    def wait_rollout(self, namespace: str, deployment: str, timeout: float = 300) -> None:
        """`kubectl rollout status`, then until the old Pods are gone too: rollout status returns while
        replaced Pods still drain (the webhook's shutdown delay keeps answering reviews with the old
        settings for a few seconds, as it must), so a Pod created right after would meet the old ones."""
        self.kubectl(
            "rollout",
            "status",
            "-n",
            namespace,
            f"deployment/{deployment}",
            f"--timeout={int(timeout)}s",
            timeout=timeout + 30,
        )
        dep = self.get("deployment", deployment, namespace)
        selector = ",".join(f"{k}={v}" for k, v in dep["spec"]["selector"]["matchLabels"].items())
        want = dep["spec"]["replicas"]

        def settled() -> bool:
            pods = self.items("pods", namespace, selector)
            hashes = {p["metadata"]["labels"].get("pod-template-hash") for p in pods}
            return (
                len(pods) == want
                and len(hashes) == 1
                and not any(p["metadata"].get("deletionTimestamp") for p in pods)
            )

        self.wait_for(f"only the new Pods of deployment {namespace}/{deployment}", settled, timeout=timeout)

    def uninstall_release(self, release: str, namespace: str) -> None:
        """`helm uninstall --wait` (if installed), then until the webhook's Pods are gone: helm waits for
        the objects it deleted, not for the Pods the garbage collector removes after their Deployment, which
        drain for seconds and, listed by label, look like the next install's Pods."""
        if self.helm("status", release, "-n", namespace, check=False).returncode == 0:
            self.helm("uninstall", release, "-n", namespace, "--wait")
        self.wait_for(
            f"the webhook Pods in {namespace} to be gone",
            lambda: not self.items("pods", namespace, WEBHOOK_PODS),
            timeout=300,
        )

    def install_release(self, release: str, namespace: str, chart: str = CHART, *args: str) -> None:
        """`helm install --wait`, then until the webhook answers the apiserver through its Service: helm's
        wait ends at Pod readiness, a moment before the Service's endpoints and kube-proxy's rules follow,
        and the next test's first Pod create must not be the one that finds out."""
        self.helm("install", release, chart, "-n", namespace, "--create-namespace", "--wait", *args)
        self.wait_serving()

    def wait_serving(self, timeout: float = 180) -> None:
        """Until a server-side dry run of an annotated Pod in `default` comes back injected."""
        probe = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": "serving-probe",
                "annotations": {"package-url": "https://probe.invalid/p.tgz"},
            },
            "spec": {"containers": [{"name": "app", "image": "busybox"}]},
        }

        def injected() -> bool:
            proc = self.kubectl(
                "create",
                "--dry-run=server",
                "-n",
                "default",
                "-o",
                "json",
                "-f",
                "-",
                input=json.dumps(probe),
                check=False,
                timeout=60,
            )
            if proc.returncode != 0:
                return False
            inits = json.loads(proc.stdout)["spec"].get("initContainers", [])
            return any(c["name"] == "package-downloader" for c in inits)

        self.wait_for("the webhook to inject a dry-run Pod", injected, timeout=timeout, interval=2)

    def describe(self, namespace: str, name: str) -> str:
        return self.kubectl("describe", "pod", "-n", namespace, name, check=False).stdout[-6000:]

    def namespace(self, name: str, labels: dict[str, str] | None = None) -> None:
        self.apply(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels or {}}}
        )


def pod_container_status(pod: dict[str, Any], name: str) -> dict[str, Any]:
    """The status entry of container `name` (init or main)."""
    status = pod.get("status", {})
    for entry in status.get("initContainerStatuses", []) + status.get("containerStatuses", []):
        if entry["name"] == name:
            return dict(entry)
    raise KeyError(f"no status for container {name!r} in pod {pod['metadata']['name']}")
