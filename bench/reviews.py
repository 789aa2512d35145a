"""Realistic AdmissionReview bodies, shaped as a kube-apiserver sends them for controller-made Pods.

A Deployment-made Pod has `generateName`, no name and no namespace in the object (the namespace is in
`request.namespace`), an ownerReference to its ReplicaSet, the pod-template-hash label, and every field
the apiserver defaults (terminationMessagePath, imagePullPolicy, dnsPolicy, schedulerName, tolerations...).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

SHA = "9f2c4e1b7a5d3c8e0f6a2b4d8c1e3f5a7b9d0c2e4f6a8b1d3c5e7f9a0b2c4d6e"


def _container(i: int) -> dict[str, Any]:
    name = ["app", "sidecar-proxy", "log-shipper"][i] if i < 3 else f"worker-{i}"
    return {
        "name": name,
        "image": f"registry.example.com/team/{name}:1.{i}.3",
        "imagePullPolicy": "IfNotPresent",
        "args": ["--config=/etc/app/config.yaml", f"--port={8080 + i}", "--log-format=json"],
        "ports": [
            {"name": "http", "containerPort": 8080 + i, "protocol": "TCP"},
            {"name": "metrics", "containerPort": 9090 + i, "protocol": "TCP"},
        ],
        "env": [
            {"name": "APP_ENV", "value": "production"},
            {"name": "LOG_LEVEL", "value": "info"},
            {
                "name": "POD_NAME",
                "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}},
            },
            {
                "name": "POD_NAMESPACE",
                "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}},
            },
            {
                "name": "NODE_IP",
                "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "status.hostIP"}},
            },
            {
                "name": "DB_PASSWORD",
                "valueFrom": {"secretKeyRef": {"name": "db-credentials", "key": "password"}},
            },
            {
                "name": "CPU_LIMIT",
                "valueFrom": {
                    "resourceFieldRef": {"containerName": name, "resource": "limits.cpu", "divisor": "0"}
                },
            },
            {"name": "FEATURE_FLAGS", "value": "alpha=false,beta=true,gamma=true"},
        ],
        "envFrom": [{"configMapRef": {"name": "app-settings"}}],
        "resources": {
            "limits": {"cpu": "1", "memory": "512Mi"},
            "requests": {"cpu": "250m", "memory": "256Mi"},
        },
        "livenessProbe": {
            "httpGet": {"path": "/healthz", "port": 8080 + i, "scheme": "HTTP"},
            "initialDelaySeconds": 10,
            "timeoutSeconds": 1,
            "periodSeconds": 10,
            "successThreshold": 1,
            "failureThreshold": 3,
        },
        "readinessProbe": {
            "httpGet": {"path": "/readyz", "port": 8080 + i, "scheme": "HTTP"},
            "timeoutSeconds": 1,
            "periodSeconds": 5,
            "successThreshold": 1,
            "failureThreshold": 3,
        },
        "startupProbe": {
            "exec": {"command": ["/bin/sh", "-c", "test -f /tmp/started"]},
            "timeoutSeconds": 1,
            "periodSeconds": 2,
            "successThreshold": 1,
            "failureThreshold": 30,
        },
        "volumeMounts": [
            {"name": "config", "mountPath": "/etc/app", "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
            {
                "name": "kube-api-access-x7k2p",
                "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
                "readOnly": True,
            },
        ],
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "readOnlyRootFilesystem": True,
        },
    }


def pod(containers: int, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    """A Deployment-made Pod as the apiserver sends it to a mutating webhook on CREATE."""
    ann = {
        "package-url": "https://packages.example.com/releases/app-1.4.2.tar.gz",
        "package-sha256": SHA,
        "kubectl.kubernetes.io/restartedAt": "2024-05-01T10:00:00Z",
        "prometheus.io/scrape": "true",
        "prometheus.io/port": "9090",
    }
    if annotations is not None:
        ann = annotations
    return {
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": {
            "generateName": "web-5d8f7c9b6-",
            "creationTimestamp": None,
            "labels": {
                "app.kubernetes.io/name": "web",
                "app.kubernetes.io/instance": "web-prod",
                "app.kubernetes.io/version": "1.4.2",
                "pod-template-hash": "5d8f7c9b6",
            },
            "annotations": ann,
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": "web-5d8f7c9b6",
                    "uid": "0b7d3c1e-5a2f-4e8b-9c6d-1f3a5b7c9d2e",
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
            "managedFields": [
                {
                    "manager": "kube-controller-manager",
                    "operation": "Update",
                    "apiVersion": "v1",
                    "time": "2024-05-01T10:00:01Z",
                    "fieldsType": "FieldsV1",
                    "fieldsV1": {"f:metadata": {"f:generateName": {}, "f:labels": {".": {}}}},
                }
            ],
        },
        "spec": {
            "volumes": [
                {"name": "config", "configMap": {"name": "web-config", "defaultMode": 420}},
                {"name": "tmp", "emptyDir": {}},
                {
                    "name": "kube-api-access-x7k2p",
                    "projected": {
                        "sources": [
                            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                            {
                                "configMap": {
                                    "name": "kube-root-ca.crt",
                                    "items": [{"key": "ca.crt", "path": "ca.crt"}],
                                }
                            },
                            {
                                "downwardAPI": {
                                    "items": [
                                        {
                                            "path": "namespace",
                                            "fieldRef": {
                                                "apiVersion": "v1",
                                                "fieldPath": "metadata.namespace",
                                            },
                                        }
                                    ]
                                }
                            },
                        ],
                        "defaultMode": 420,
                    },
                },
            ],
            "initContainers": [
                {
                    "name": "migrate",
                    "image": "registry.example.com/team/migrate:1.4.2",
                    "command": ["/migrate", "--up"],
                    "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}},
                    "terminationMessagePath": "/dev/termination-log",
                    "terminationMessagePolicy": "File",
                    "imagePullPolicy": "IfNotPresent",
                }
            ],
            "containers": [_container(i) for i in range(containers)],
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 30,
            "dnsPolicy": "ClusterFirst",
            "serviceAccountName": "web",
            "serviceAccount": "web",
            "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "fsGroup": 10001},
            "affinity": {
                "podAntiAffinity": {
                    "preferredDuringSchedulingIgnoredDuringExecution": [
                        {
                            "weight": 100,
                            "podAffinityTerm": {
                                "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "web"}},
                                "topologyKey": "kubernetes.io/hostname",
                            },
                        }
                    ]
                }
            },
            "schedulerName": "default-scheduler",
            "tolerations": [
                {
                    "key": "node.kubernetes.io/not-ready",
                    "operator": "Exists",
                    "effect": "NoExecute",
                    "tolerationSeconds": 300,
                },
                {
                    "key": "node.kubernetes.io/unreachable",
                    "operator": "Exists",
                    "effect": "NoExecute",
                    "tolerationSeconds": 300,
                },
            ],
            "priority": 0,
            "enableServiceLinks": True,
            "preemptionPolicy": "PreemptLowerPriority",
        },
        "status": {},
    }


def review(obj: dict[str, Any], uid: str = "705ab4f5-6393-11e8-b7cc-42010a800002") -> dict[str, Any]:
    """An AdmissionReview v1 for CREATE of `obj` in namespace `prod`."""
    return {
        "kind": "AdmissionReview",
        "apiVersion": "admission.k8s.io/v1",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "requestResource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "prod",
            "operation": "CREATE",
            "userInfo": {
                "username": "system:serviceaccount:kube-system:replicaset-controller",
                "uid": "b1d6c2a3-8e4f-4a5b-9c7d-2e1f3a4b5c6d",
                "groups": [
                    "system:serviceaccounts",
                    "system:serviceaccounts:kube-system",
                    "system:authenticated",
                ],
            },
            "object": obj,
            "oldObject": None,
            "dryRun": False,
            "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"},
        },
    }


BODIES: dict[str, Any] = {
    "pod3": lambda: review(pod(3)),
    "pod20": lambda: review(pod(20)),
    # A typo'd digest: denied with a message (the error path must not leak either).
    "denied": lambda: review(
        pod(3, {"package-url": "https://packages.example.com/a.tar", "package-sha256": "abc"})
    ),
    # No package-url: the common case in a cluster where the webhook sees every Pod.
    "skip": lambda: review(pod(3, {"prometheus.io/scrape": "true"})),
}


def write_bodies(directory: Path) -> dict[str, Path]:
    """Write each body as compact JSON (as the apiserver sends it); return name -> path."""
    directory.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, make in BODIES.items():
        path = directory / f"{name}.json"
        path.write_bytes(json.dumps(make(), separators=(",", ":")).encode())
        out[name] = path
    return out


def clone(obj: dict[str, Any]) -> dict[str, Any]:
    return copy.deepcopy(obj)
