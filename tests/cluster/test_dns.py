"""The cluster's DNS (CoreDNS as kubeadm deploys it, scripts/cluster-dns.yaml): a Pod resolves Service
names through the kubelet's clusterDNS and search path; names outside the cluster do not resolve, as no
query may leave the cluster's namespace (the one difference from production: no upstream resolver)."""

from __future__ import annotations

from tests.cluster.conftest import NamespaceFactory
from tests.cluster.live import Live
from tests.cluster.pods import pod


def test_pods_resolve_service_names(live: Live, namespace: NamespaceFactory) -> None:
    ns = namespace()
    webhook_ip = live.get("service", "package-injector", "package-injector")["spec"]["clusterIP"]
    kubernetes_ip = live.get("service", "kubernetes", "default")["spec"]["clusterIP"]
    manifest = pod("dns", containers=1)
    manifest["spec"]["restartPolicy"] = "Never"
    manifest["spec"]["containers"][0]["command"] = [
        "/bin/busybox",
        "sh",
        "-c",
        # Full names (busybox's nslookup does not walk the search path; the helm test's check Pod, glibc,
        # resolves NAME.NAMESPACE.svc through it), and a name no cluster serves.
        "cat /etc/resolv.conf; /bin/busybox nslookup package-injector.package-injector.svc.cluster.local;"
        " /bin/busybox nslookup kubernetes.default.svc.cluster.local;"
        " /bin/busybox nslookup example.invalid && echo OUTSIDE-RESOLVED; exit 0",
    ]
    live.create(manifest, namespace=ns)
    live.wait_for(
        "the dns Pod to finish",
        lambda: live.get("pod", "dns", ns)["status"].get("phase") in ("Succeeded", "Failed"),
        timeout=120,
    )
    out = live.kubectl("logs", "-n", ns, "dns").stdout
    assert "nameserver 10.200.254.10" in out, out
    assert f"search {ns}.svc.cluster.local svc.cluster.local cluster.local" in out, out
    assert f"Address: {webhook_ip}" in out and f"Address: {kubernetes_ip}" in out, out
    assert "OUTSIDE-RESOLVED" not in out, out
