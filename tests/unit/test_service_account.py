"""A Kubernetes ServiceAccount is read as Calico reads it: its labels become
the `pcsa.` labels of its `ksa.<namespace>.<name>` profile (with its name as
`pcsa.projectcalico.org/name`), which a rule's `serviceAccounts.selector`
matches. A Profile of that name in the repository wins; its other fields
are checked for their shape and not read."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from reconciler.cli.main import main
from reconciler.compile import policy_incremental as inc
from reconciler.compile.dataplane import compile_desired
from reconciler.compile.policy_model import build_model
from reconciler.config.load import load
from reconciler.config.model import Resource
from reconciler.config.validate import validate_file
from reconciler.plan.state import Link
from tests.unit import test_schemas as schemas
from tests.unit.test_error_paths import FELIX
from tests.unit.test_incremental import FELIX as FELIX_RESOURCE

PODS = """\
apiVersion: v1
kind: Namespace
metadata: {name: prod-api}
---
apiVersion: v1
kind: Namespace
metadata: {name: prod-db}
---
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {name: n1-k8s-api--0-eth0, namespace: prod-api, labels: {app: api}}
spec: {node: n1, orchestrator: k8s, pod: api-0, interfaceName: cali-api, ipNetworks: [10.0.0.2/32],
       profiles: [kns.prod-api, ksa.prod-api.api], serviceAccountName: api}
---
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {name: n1-k8s-db--0-eth0, namespace: prod-db, labels: {app: db}}
spec: {node: n1, orchestrator: k8s, pod: db-0, interfaceName: cali-db, ipNetworks: [10.0.1.2/32],
       profiles: [kns.prod-db]}
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: db-ingress, namespace: prod-db}
spec:
  selector: app == 'db'
  ingress:
  - action: Allow
    protocol: TCP
    source: {namespaceSelector: all(), serviceAccounts: {selector: tier == 'backend'}}
  - {action: Deny}
"""

ACCOUNT = """\
apiVersion: v1
kind: ServiceAccount
metadata:
  name: api
  namespace: prod-api
  labels: {tier: backend}
secrets:
- {name: api-token, kind: Secret, apiVersion: v1, namespace: prod-api}
imagePullSecrets:
- {name: registry}
automountServiceAccountToken: false
"""

WRITTEN_PROFILE = """\
apiVersion: projectcalico.org/v3
kind: Profile
metadata: {name: ksa.prod-api.api}
spec:
  labelsToApply: {pcsa.tier: frontend}
"""

ALLOWED = "Allow by policy/prod-db/db-ingress ingress rule 1"
DENIED = "Deny by policy/prod-db/db-ingress ingress rule 2"


def explain(tmp_path: Path, capsys: pytest.CaptureFixture[str], *docs: str) -> str:
    cfg = tmp_path / "cfg"
    cfg.mkdir(exist_ok=True)
    (cfg / "all.yaml").write_text("---\n".join([FELIX, PODS, *docs]))
    code = main(["--explain", "--from", "prod-api/api-0", "--to", "db-0:5432/tcp",
                 "--config", str(cfg), "--node", "n1", "--no-cache"])  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 0, out + err
    return out


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def test_a_service_accounts_labels_are_what_its_selector_matches(tmp_path, capsys):
    """The finding's case: api-0 runs as prod-api/api; db's policy allows
    `serviceAccounts: {selector: tier == 'backend'}` and denies the rest."""
    out = explain(tmp_path, capsys, ACCOUNT)
    assert f"prod-db/n1-k8s-db--0-eth0 ingress: {ALLOWED}" in out, out
    assert out.endswith("Verdict: Allow\n"), out
    unlabelled = ACCOUNT.replace("labels: {tier: backend}", "labels: {tier: batch}")
    for docs in ((unlabelled,), ()):  # another label; no ServiceAccount at all
        out = explain(tmp_path, capsys, *docs)
        assert f"prod-db/n1-k8s-db--0-eth0 ingress: {DENIED}" in out, out
        assert out.endswith("Verdict: Deny\n"), out


def test_a_written_ksa_profile_wins_over_the_service_account(tmp_path, capsys):
    assert ALLOWED in explain(tmp_path, capsys, ACCOUNT)  # the account alone: backend
    out = explain(tmp_path, capsys, ACCOUNT, WRITTEN_PROFILE)  # the Profile says frontend
    assert f"prod-db/n1-k8s-db--0-eth0 ingress: {DENIED}" in out, out
    out = explain(tmp_path, capsys, WRITTEN_PROFILE, ACCOUNT)  # in either order
    assert f"prod-db/n1-k8s-db--0-eth0 ingress: {DENIED}" in out, out
    backend = WRITTEN_PROFILE.replace("frontend", "backend")
    out = explain(tmp_path, capsys, ACCOUNT.replace("tier: backend", "tier: batch"), backend)
    assert f"prod-db/n1-k8s-db--0-eth0 ingress: {ALLOWED}" in out, out


def model_of(*docs: str):
    resources = [r for doc in docs for r in load(doc, "x.yaml").resources]
    return build_model(resources, "n1")


def test_the_profile_carries_the_name_calico_adds_and_is_inherited():
    """Calico's profile of a ServiceAccount has its labels under pcsa. and
    pcsa.projectcalico.org/name (the API server adds no label to a
    ServiceAccount); a pod naming the profile inherits them, and the
    account's own selector sees them unprefixed."""
    m = model_of(PODS, ACCOUNT)
    (api,) = [p for p in m.peers if p.ref.endswith("n1-k8s-api--0-eth0")]
    assert api.sa_labels == {"tier": "backend", "projectcalico.org/name": "api"}
    assert api.labels["pcsa.tier"] == "backend"
    assert api.labels["pcsa.projectcalico.org/name"] == "api"
    (other,) = [p for p in model_of(PODS).peers if p.ref.endswith("n1-k8s-api--0-eth0")]
    assert other.sa_labels == {"projectcalico.org/name": "api"}  # no ServiceAccount written
    assert "pcsa.tier" not in other.labels


def test_the_schema_is_draft7_closed_and_namespaced():
    """As test_schemas checks every kind it lists: a draft-7 schema both
    validators compile, closed objects, local refs; v1, namespaced, no spec."""
    schemas.test_schema_is_valid_draft7("ServiceAccount")
    schemas.test_schema_is_closed_and_portable("ServiceAccount")
    s = schemas.schema("ServiceAccount")
    assert s["properties"]["apiVersion"] == {"const": "v1"}
    assert s["properties"]["kind"] == {"const": "ServiceAccount"}
    assert s["additionalProperties"] is False and "spec" not in s["properties"]
    assert set(s["definitions"]["metadata"]["required"]) == {"name", "namespace"}


def findings(text: str) -> list[str]:
    return [d.render() for d in validate_file("x.yaml", text.encode()).diagnostics]


def test_a_service_account_validates_with_all_its_fields():
    """Read and validated (not passed over as a document reconcile does
    not read), its secrets, pull secrets and token setting accepted."""
    got = validate_file("x.yaml", ACCOUNT.encode())
    assert got.diagnostics == ()
    assert [(r.kind, r.namespace, r.name) for r in got.resources] == [
        ("ServiceAccount", "prod-api", "api")
    ]


@pytest.mark.parametrize(
    ("old", "new", "told"),
    [
        ("labels: {tier: backend}", "labels: {tier: back end}",
         "6: ServiceAccount/prod-api/api: metadata.labels.tier: 'back end' is not valid: a label "
         "value is empty or at most 63 letters, digits, '-', '_' and '.' that starts and ends "
         "with a letter or digit"),
        ("automountServiceAccountToken: false", "automountServiceAccountToken: 'no'",
         "11: ServiceAccount/prod-api/api: automountServiceAccountToken: 'no' is a string here, "
         "not a boolean (YAML 1.2 reads only true and false as booleans): write false"),
        ("- {name: registry}", "- {nmae: registry}",
         "10: ServiceAccount/prod-api/api: imagePullSecrets[0].nmae: unknown field 'nmae'; "
         "did you mean 'name'?"),
        ("secrets:", "secret:",
         "7: ServiceAccount/prod-api/api: secret: unknown field 'secret'; did you mean 'secrets'?"),
        ("- {name: api-token,", "- {name: [api-token],",
         "8: ServiceAccount/prod-api/api: secrets[0].name: ['api-token'] is not of type 'string'"),
        ("name: api\n", "name: API\n",
         "4: ServiceAccount/prod-api/API: metadata.name: 'API' is not valid: A DNS-1123 "
         "subdomain: lower-case alphanumerics, '-' and '.'."),
        ("namespace: prod-api\n", "namespace: prod.api\n",
         "5: ServiceAccount/prod.api/api: metadata.namespace: 'prod.api' is not valid: The "
         "namespace (a DNS-1123 label)."),
        ("  namespace: prod-api\n", "",
         "3: ServiceAccount/api: metadata.namespace: required: a namespaced kind names its "
         'namespace ("default" is not assumed)'),
    ],
    ids=["label value", "automount", "pull secret field", "top-level field", "secret name",
         "name", "namespace", "no namespace"],
)  # fmt: skip
def test_a_bad_service_account_field_is_told_with_its_line(old, new, told):
    assert ACCOUNT.count(old) == 1
    assert findings(ACCOUNT.replace(old, new)) == [f"x.yaml:{told}"]


# ---------------------------------------------------------------- incremental compile

LINKS = [Link("cali-api", 10), Link("cali-db", 11)]


def compile_all(docs: list[str], previous=None):
    resources = [r for doc in docs for r in load(doc, "x.yaml").resources]
    return compile_desired([FELIX_RESOURCE, *resources], "n1", LINKS, "/sys/fs/bpf/x", "src",
                           previous=previous)  # fmt: skip


def test_a_changed_service_account_recompiles_as_from_scratch():
    """The db pod's chain reads the api account's labels: relabelling the
    account moves it, and the incremental compile gives the full one."""
    previous = compile_all([PODS, ACCOUNT])
    assert previous.policy_index is not None
    relabelled = [PODS, ACCOUNT.replace("tier: backend", "tier: batch")]
    scratch = compile_all(relabelled)
    assert scratch.objects != previous.objects  # the change moves the state
    incremental = compile_all(relabelled, previous)
    assert incremental == scratch
    assert {a: o.info for a, o in incremental.objects.items()} == {
        a: o.info for a, o in scratch.objects.items()
    }
    assert incremental.policy_index == scratch.policy_index


def test_the_service_account_is_a_read_input():
    (account,) = load(ACCOUNT, "x.yaml").resources
    read = inc.read_inputs([account])
    assert read is not None and set(read[0]) == {"ServiceAccount/prod-api/api"}
    moved = dataclasses.replace(account, body={**account.body, "metadata": {
        **account.body["metadata"], "labels": {"tier": "batch"}}})  # fmt: skip
    again = inc.read_inputs([moved])
    assert again is not None and again[0] != read[0]
    assert isinstance(account, Resource) and account.namespace == "prod-api"
