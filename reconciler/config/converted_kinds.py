"""The Kubernetes kinds this node enforces as the Calico policy Calico makes
of them: one registry that the loader and validation both read.

The loader gives each such document a kind of its own (Kubernetes'
NetworkPolicy shares its kind with Calico's), refuses the versions of its
API that are not read, and finds a stored resource's lines again through
the conversion; validation converts each valid one and explains a name that
collides with a converted one. A new converted kind is one entry here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from reconciler.config import k8s_admin_network_policy as anp
from reconciler.config import k8s_network_policy as knp
from reconciler.config.model import Resource


@dataclass(frozen=True, slots=True)
class ConvertedKind:
    kubernetes_kind: str  # as written in the document
    api_version: str  # the one version read
    kind: str  # the loader's kind for it (its schema's name)
    namespaced: bool
    groups: frozenset[str]  # API groups whose other versions are refused
    version_source: str  # who serves (or enforces) `api_version`, for that refusal
    calico_kind: str  # the kind it is converted into
    name_prefix: str  # the converted resource's name is this prefix + its own
    to_calico: Callable[[Resource], Resource]  # of a valid resource of `kind`
    collision_hint: Callable[[str, str], str]  # (kind, name) -> the hint, or ''


def _admin(kind: str) -> ConvertedKind:
    kubernetes_kind, prefix, _ = anp.KINDS[kind]
    return ConvertedKind(
        kubernetes_kind=kubernetes_kind,
        api_version=anp.API_VERSION,
        kind=kind,
        namespaced=False,
        groups=frozenset({"policy.networking.k8s.io"}),
        version_source="Calico v3.31 enforces",
        calico_kind="GlobalNetworkPolicy",
        name_prefix=prefix,
        to_calico=anp.to_calico,
        collision_hint=anp.collision_hint,
    )


CONVERTED = (
    ConvertedKind(
        kubernetes_kind="NetworkPolicy",
        api_version=knp.API_VERSION,
        kind=knp.KIND,
        namespaced=True,
        groups=frozenset({"networking.k8s.io", "extensions"}),
        version_source="Kubernetes serves",
        calico_kind="NetworkPolicy",
        name_prefix=knp.NAME_PREFIX,
        to_calico=knp.to_calico,
        collision_hint=knp.collision_hint,
    ),
    _admin(anp.ADMIN_KIND),
    _admin(anp.BASELINE_KIND),
)
_BY_KIND = {c.kind: c for c in CONVERTED}
_BY_DOCUMENT = {(c.api_version, c.kubernetes_kind): c for c in CONVERTED}


def converted(api_version: object, kind: str) -> ConvertedKind | None:
    """The converted kind a document of `api_version` and `kind` is; None
    for any other document."""
    return _BY_DOCUMENT.get((api_version, kind)) if isinstance(api_version, str) else None


def unread_version(api_version: str, kind: str) -> str | None:
    """Why a converted kind in another version of its API is refused; None
    if `kind` of `api_version` is no such document."""
    group = api_version.split("/")[0]
    for c in CONVERTED:
        if c.kubernetes_kind == kind and group in c.groups and api_version != c.api_version:
            return (
                f"{kind} of {api_version} is not a version {c.version_source}: write "
                f"apiVersion: {c.api_version}"
            )
    return None


def enforced(resource: Resource) -> Resource:
    """What the pipeline reads of a valid resource: one of a converted kind
    converted, any other as it is."""
    found = _BY_KIND.get(resource.kind)
    return found.to_calico(resource) if found else resource


def converted_name(resource: Resource) -> str | None:
    """The name `resource` has once converted; None if it is not converted."""
    found = _BY_KIND.get(resource.kind)
    return found.name_prefix + resource.name if found else None


def collision_hint(kind: str, name: str) -> str:
    """Why two resources of `kind` share `name` when one of them may be
    converted; '' where no conversion gives that name."""
    for c in CONVERTED:
        if kind == c.calico_kind and name.startswith(c.name_prefix):
            return c.collision_hint(kind, name)
    return ""
