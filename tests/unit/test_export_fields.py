"""What calicoctl and kubectl exports carry validates: a string field whose
Go json tag lacks omitempty written "" (Go marshals the unset value), and
every field of Kubernetes' ObjectMeta with its own shape (the API server
sets most of them; nothing here acts on them). What is wrong is still told
with its file, line, resource and field."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest

from reconciler.assets import SCHEMA_DIR
from reconciler.config.felix import effective_config
from reconciler.config.load import load
from reconciler.config.validate import validate_file


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def findings(text: str) -> list[str]:
    return [d.render() for d in validate_file("x.yaml", text.encode()).diagnostics]


# ---------------------------------------------------------------- "" as unset

FELIX = """\
apiVersion: projectcalico.org/v3
kind: FelixConfiguration
metadata: {{name: {name}}}
spec:
  bpfEnabled: true
  bpfLogLevel: {level}
"""


def test_felix_bpf_log_level_empty_is_valid_and_the_default():
    """FelixConfigurationSpec.BPFLogLevel is `json:"bpfLogLevel"`: every
    export of a FelixConfiguration that leaves it unset says ""."""
    assert findings(FELIX.format(name="default", level='""')) == []
    only = load(FELIX.format(name="default", level='""'), "x.yaml").resources
    assert effective_config(only, "n1")["bpfLogLevel"] == "Off"
    # unset on the node's resource: the `default` resource's value stands
    both = load(
        FELIX.format(name="default", level="Info") + "---\n"
        + FELIX.format(name="node.n1", level='""'), "x.yaml"
    ).resources  # fmt: skip
    assert effective_config(both, "n1")["bpfLogLevel"] == "Info"


def test_felix_bpf_log_level_misspelt_is_refused_naming_the_values():
    # Calico's validator is case-sensitive (^(Debug|Info|Off)$)
    assert findings(FELIX.format(name="default", level="debug")) == [
        "x.yaml:6: FelixConfiguration/default: spec.bpfLogLevel: 'debug' is not one of 'Off', "
        "'Info', 'Debug' (or \"\" for the default); did you mean 'Debug'?"
    ]


WEP = """\
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {name: n1-k8s-web-eth0, namespace: shop}
spec:
  node: n1
  interfaceName: cali-web
  ipNetworks: [10.0.0.1/32]
  ipNATs:
  - {internalIP: "INTERNAL", externalIP: ""}
  ports:
  - {name: "NAME", protocol: TCP, port: 8080, hostPort: 30080, hostIP: "HOSTIP"}
"""


def wep(internal: str = "", name: str = "", host_ip: str = "") -> str:
    text = WEP.replace("INTERNAL", internal).replace("NAME", name)
    return text.replace("HOSTIP", host_ip)


def test_workload_endpoint_port_and_nat_fields_empty_are_valid():
    """WorkloadEndpointPort's name and hostIP and IPNAT's addresses have no
    omitempty: calicoctl writes "" for each one unset."""
    assert findings(wep()) == []
    assert findings(wep("10.0.0.1", "http", "192.168.50.1")) == []


@pytest.mark.parametrize(
    "written,line,field,message",
    [
        (wep(internal="10.0.0"), 9, "spec.ipNATs[0].internalIP",
         "'10.0.0' is not valid: An IPv4 or IPv6 address without a prefix length."),
        (wep(host_ip="eth0"), 11, "spec.ports[0].hostIP",
         "'eth0' is not valid: An IPv4 or IPv6 address without a prefix length."),
        (wep(name="Web"), 11, "spec.ports[0].name",
         "'Web' is not valid: a port name is at most 15 lower-case letters, digits and '-', "
         "with a letter, no '--', not starting or ending with '-'"),
    ],
    ids=["nat address", "host ip", "port name"],
)  # fmt: skip
def test_workload_endpoint_fields_still_refuse_what_is_not_empty(written, line, field, message):
    assert findings(written) == [
        f"x.yaml:{line}: WorkloadEndpoint/shop/n1-k8s-web-eth0: {field}: {message}"
    ]


# ---------------------------------------------------------------- ObjectMeta

# Every field of apimachinery's ObjectMeta (the tombstoned clusterName aside).
OBJECT_META: dict[str, Any] = {
    "name": "x",
    "generateName": "x-",
    "selfLink": "/api/v1/namespaces/shop/services/x",
    "uid": "5b7c2ad5-0ac3-4b0e-a0b8-2b2d6ed2f5a1",
    "resourceVersion": "1848213",
    "generation": 3,
    "creationTimestamp": "2024-03-11T09:12:44Z",
    "deletionTimestamp": "2024-06-01T12:00:00Z",
    "deletionGracePeriodSeconds": 30,
    "labels": {"app": "x"},
    "annotations": {"a": "b"},
    "ownerReferences": [
        {"apiVersion": "v1", "kind": "Namespace", "name": "shop", "uid": "u",
         "controller": True, "blockOwnerDeletion": False}  # fmt: skip
    ],
    "finalizers": ["service.kubernetes.io/load-balancer-cleanup"],
    "managedFields": [
        {"manager": "kubectl", "operation": "Update", "apiVersion": "v1",
         "time": "2024-03-11T09:12:44Z", "fieldsType": "FieldsV1",
         "fieldsV1": {"f:metadata": {"f:labels": {".": {}, "f:app": {}}}},
         "subresource": "status"}  # fmt: skip
    ],
}


@pytest.mark.parametrize("path", sorted(SCHEMA_DIR.glob("*.json")), ids=lambda p: p.stem)
def test_every_schema_takes_all_of_object_meta(path):
    schema = json.loads(path.read_text())
    meta_schema = {"definitions": schema["definitions"], "$ref": "#/definitions/metadata"}
    namespaced = "namespace" in schema["definitions"]["metadata"]["properties"]
    meta = {**OBJECT_META, **({"namespace": "shop"} if namespaced else {})}
    assert list(jsonschema.Draft7Validator(meta_schema).iter_errors(meta)) == []


SERVICE = """\
apiVersion: v1
kind: Service
metadata:
  name: s1
  namespace: x
  selfLink: /api/v1/namespaces/x/services/s1
  finalizers:
  - service.kubernetes.io/load-balancer-cleanup
  deletionTimestamp: "2024-06-01T12:00:00Z"
  deletionGracePeriodSeconds: 0
  managedFields:
  - manager: kubectl
    operation: Update
spec:
  clusterIP: 10.96.99.1
  ports:
  - {port: 80, protocol: TCP, targetPort: 80}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: x1
  finalizers: []
spec:
  selector: all()
"""


def test_an_exported_service_and_policy_with_server_set_metadata_validate():
    assert findings(SERVICE) == []


@pytest.mark.parametrize(
    "old,new,line,field,message",
    [
        ("operation: Update", "operation: Patch", 13, "metadata.managedFields[0].operation",
         "'Patch' is not one of 'Apply', 'Update'"),
        ("deletionGracePeriodSeconds: 0", "deletionGracePeriodSeconds: -1", 10,
         "metadata.deletionGracePeriodSeconds", "-1 is less than the minimum of 0"),
        ("  - manager: kubectl", "  - managr: kubectl", 12, "metadata.managedFields[0].managr",
         "unknown field 'managr'; did you mean 'manager'?"),
        ("  finalizers: []", "  finalizers: cleanup", 23, "metadata.finalizers",
         "'cleanup' is not of type 'array'"),
    ],
    ids=["managedFields operation", "grace period", "managedFields field", "finalizers"],
)  # fmt: skip
def test_object_meta_fields_of_the_wrong_shape_are_told(old, new, line, field, message):
    assert SERVICE.count(old) == 1
    ref = "GlobalNetworkPolicy/x1" if field == "metadata.finalizers" else "Service/x/s1"
    assert findings(SERVICE.replace(old, new)) == [f"x.yaml:{line}: {ref}: {field}: {message}"]


def test_a_status_where_the_kind_has_none_says_to_remove_it():
    k8s = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n"
    k8s += "metadata: {name: np, namespace: x}\nspec: {podSelector: {}}\nstatus: {}\n"
    calico = "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: p}\n"
    calico += "spec: {cidr: 10.65.0.0/16}\nstatus: {}\n"
    assert findings(k8s + "---\n" + calico) == [
        "x.yaml:5: KubernetesNetworkPolicy/x/np: status: a networking.k8s.io/v1 NetworkPolicy "
        "has no status: the field is gone (Kubernetes removed the alpha NetworkPolicyStatus; "
        "an export from kubectl 1.24-1.27 may still print 'status: {}'): remove it",
        "x.yaml:11: IPPool/p: status: a projectcalico.org/v3 IPPool has no status field: remove "
        "it (a status is the API server's report, not configuration)",
    ]
