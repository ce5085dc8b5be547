"""Service compilation follows kube-proxy's rules; ids are stable; overflow is an error."""

from reconciler.compile.dataplane import compile_desired
from reconciler.compile.services import (
    FE_AFFINITY,
    FE_ETP_LOCAL,
    FE_ITP_LOCAL,
    FE_SRC_RANGES,
    compile_services,
)
from reconciler.config.model import Resource
from reconciler.plan.state import Link


def svc(name, spec, labels=None, ns="default", status=None):
    body = {"kind": "Service", "metadata": {"name": name, "labels": labels or {}}, "spec": spec}
    if status:
        body["status"] = status
    return Resource("Service", name, ns, body, "s.yaml", 1)


def eps(service, endpoints, ports=(("http", 8080, "TCP"),), ns="default", name=None):
    body = {
        "kind": "EndpointSlice",
        "metadata": {
            "name": name or f"{service}-x",
            "labels": {"kubernetes.io/service-name": service},
        },
        "addressType": "IPv4",
        "ports": [{"name": n, "port": p, "protocol": proto} for n, p, proto in ports],
        "endpoints": endpoints,
    }
    return Resource("EndpointSlice", body["metadata"]["name"], ns, body, "e.yaml", 1)


def ep(ip, node="n1", ready=True):
    return {"addresses": [ip], "nodeName": node, "conditions": {"ready": ready}}


HTTP = {"name": "http", "port": 80, "protocol": "TCP"}


def test_clusterip_backends_ready_only_local_first():
    tables = compile_services(
        [
            svc("web", {"clusterIP": "10.96.0.1", "ports": [HTTP]}),
            eps(
                "web",
                [
                    ep("10.0.0.3", "n2"),
                    ep("10.0.0.2"),
                    ep("10.0.0.9", ready=False),
                    {"addresses": ["10.0.0.4"], "nodeName": "n2"},
                ],
            ),
        ],
        "n1",
        [],
    )
    (port,) = tables.ports
    assert [(b.ip, b.port, b.local) for b in port.backends] == [
        ("10.0.0.2", 8080, True),
        ("10.0.0.3", 8080, False),
        ("10.0.0.4", 8080, False),
    ]
    assert port.local_count == 1
    (fe,) = port.frontends
    assert (fe.label, fe.flags) == ("10.96.0.1:80/tcp", 0)


def test_skipped_services():
    tables = compile_services(
        [
            svc("headless", {"clusterIP": "None", "ports": [HTTP]}),
            svc("ext", {"type": "ExternalName", "externalName": "x.example", "ports": [HTTP]}),
            svc(
                "other",
                {"clusterIP": "10.96.0.2", "ports": [HTTP]},
                labels={"service.kubernetes.io/service-proxy-name": "someone-else"},
            ),
            svc("sctp", {"clusterIP": "10.96.0.3", "ports": [{"port": 9, "protocol": "SCTP"}]}),
        ],
        "n1",
        [],
    )
    assert tables.ports == ()
    assert tables.warnings == ("Service/default/sctp: SCTP ports are not load-balanced; skipped",)


def test_nodeport_external_ips_lb_affinity_and_traffic_policies():
    tables = compile_services(
        [
            svc(
                "web",
                {
                    "type": "LoadBalancer",
                    "clusterIP": "10.96.0.1",
                    "externalIPs": ["203.0.113.7"],
                    "sessionAffinity": "ClientIP",
                    "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}},
                    "externalTrafficPolicy": "Local",
                    "internalTrafficPolicy": "Local",
                    "ports": [{**HTTP, "nodePort": 30080}],
                },
                status={"loadBalancer": {"ingress": [{"ip": "198.51.100.1"}]}},
            ),
            eps("web", [ep("10.0.0.2")]),
        ],
        "n1",
        ["192.168.1.10"],
    )
    fes = {f.label: f for f in tables.ports[0].frontends}
    assert set(fes) == {
        "10.96.0.1:80/tcp",
        "203.0.113.7:80/tcp",
        "198.51.100.1:80/tcp",
        "192.168.1.10:30080/tcp",
    }
    assert fes["10.96.0.1:80/tcp"].flags == FE_AFFINITY | FE_ITP_LOCAL
    assert fes["192.168.1.10:30080/tcp"].flags == FE_AFFINITY | FE_ETP_LOCAL
    assert fes["203.0.113.7:80/tcp"].affinity_timeout_s == 60


def _ranged(ranges, kind="LoadBalancer", external_ips=("203.0.113.7",), lb="198.51.100.1"):
    return svc(
        "web",
        {
            "type": kind,
            "clusterIP": "10.96.0.1",
            "externalIPs": list(external_ips),
            "loadBalancerSourceRanges": ranges,
            "externalTrafficPolicy": "Local",
            "ports": [{**HTTP, "nodePort": 30080}],
        },
        status={"loadBalancer": {"ingress": [{"ip": lb}]}},
    )


def test_source_ranges_bind_the_load_balancer_ips_alone():
    tables = compile_services(
        [_ranged(["192.0.2.9/24", " 10.8.0.0/16", "2001:db8::/32"]), eps("web", [ep("10.0.0.2")])],
        "n1",
        ["192.168.1.10"],
    )
    (port,) = tables.ports
    flags = {f.label: f.flags for f in port.frontends}
    assert flags == {
        "10.96.0.1:80/tcp": 0,
        "203.0.113.7:80/tcp": FE_ETP_LOCAL,  # externalIPs: kube-proxy leaves them open
        "192.168.1.10:30080/tcp": FE_ETP_LOCAL,
        "198.51.100.1:80/tcp": FE_ETP_LOCAL | FE_SRC_RANGES,
    }
    # host bits cleared, the IPv6 range left to the IPv6 proxy, sorted
    assert port.source_ranges == ("10.8.0.0/16", "192.0.2.0/24")
    assert tables.warnings == ()


def test_source_ranges_need_a_load_balancer_and_fail_closed():
    for kind in ("NodePort", "ClusterIP"):
        (port,) = compile_services([_ranged(["10.0.0.0/8"], kind)], "n1", []).ports
        assert not any(f.flags & FE_SRC_RANGES for f in port.frontends), kind
    (port,) = compile_services([_ranged([])], "n1", []).ports
    assert not any(f.flags & FE_SRC_RANGES for f in port.frontends)
    only_v6 = compile_services([_ranged(["2001:db8::/32", "10.0.0.300/8"])], "n1", [])
    (port,) = only_v6.ports
    lb = next(f for f in port.frontends if f.vip == "198.51.100.1")
    assert lb.flags & FE_SRC_RANGES and port.source_ranges == ()
    assert only_v6.warnings == (
        "Service/default/web: loadBalancerSourceRanges: '10.0.0.300/8' is not a network; ignored",
        "Service/default/web: loadBalancerSourceRanges has no IPv4 range: "
        "no IPv4 source reaches its load balancer IPs",
    )
    # an address that is both an external IP and a ranged load balancer IP stays ranged
    both = compile_services([_ranged(["10.0.0.0/8"], external_ips=["198.51.100.1"])], "n1", [])
    assert [(f.label, f.flags) for f in both.ports[0].frontends if f.vip == "198.51.100.1"] == [
        ("198.51.100.1:80/tcp", FE_ETP_LOCAL | FE_SRC_RANGES)
    ]


def test_source_range_entries_plan_converge_and_follow_the_service():
    from reconciler.cli.render import change_line
    from reconciler.compile.services import service_ids
    from reconciler.plan.diff import diff
    from reconciler.plan.state import ObservedState

    web = _ranged(["192.0.2.0/24", "10.8.0.0/16"])
    resources = [FELIX, web, eps("web", [ep("10.0.0.2")])]
    desired = compile_desired(resources, "n1", [Link("eth0", 2, ("192.168.1.10",))], "/x", "s")
    assert desired.errors == ()
    # the Local policy's split list is not needed: the frontend keeps the port's id
    svc_id = service_ids(resources)["default/web:http/tcp"]
    changes = {c.address: c for c in diff(desired, ObservedState({}))}
    ranges = sorted(a for a in changes if a.startswith("map/rcl_nat_src/"))
    assert ranges == [
        f"map/rcl_nat_src/{svc_id:08x}/10.8.0.0/16",
        f"map/rcl_nat_src/{svc_id:08x}/192.0.2.0/24",
    ]
    assert change_line(changes[ranges[0]]).endswith("(default/web:http/tcp)")
    assert diff(desired, ObservedState(dict(desired.objects), (), desired.tables)) == ()
    # dropping the ranges removes their entries and the frontend's flag
    open_web = _ranged([])
    later = compile_desired(
        [FELIX, open_web, eps("web", [ep("10.0.0.2")])],
        "n1", [Link("eth0", 2, ("192.168.1.10",))], "/x", "s",
    )  # fmt: skip
    moved = {
        c.address: c.action.name
        for c in diff(later, ObservedState(dict(desired.objects), (), desired.tables))
    }
    assert moved == {
        ranges[0]: "DELETE",
        ranges[1]: "DELETE",
        "map/rcl_nat_fe/198.51.100.1:80/tcp": "UPDATE",
    }


def _checked(name, port, etp="Local", kind="LoadBalancer"):
    return svc(
        name,
        {
            "type": kind,
            "clusterIP": "10.96.0.1",
            "externalTrafficPolicy": etp,
            "healthCheckNodePort": port,
            "ports": [HTTP, {"name": "dns", "port": 53, "protocol": "UDP"}],
        },
    )


def test_health_checks_count_the_ready_endpoints_on_this_node():
    slices = [
        eps(
            "web",
            [ep("10.0.0.2"), ep("10.0.0.3"), ep("10.0.0.4", ready=False), ep("10.0.0.5", "n2")],
            ports=(("http", 8080, "TCP"), ("dns", 53, "UDP")),
        )
    ]
    desired = compile_desired(
        [ROOMY_FELIX, _checked("web", 32001), *slices, _checked("idle", 32002),
         _checked("cluster", 32003, etp="Cluster"), _checked("np", 32004, kind="NodePort"),
         _checked("odd", True)],
        "n1", [], "/x", "s",
    )  # fmt: skip
    # each local ready address and port once: 10.0.0.2 and .3 on 8080 and 53
    assert desired.health_checks == {"default/web": (32001, 4), "default/idle": (32002, 0)}


def test_a_health_check_port_two_services_name_is_the_firsts():
    desired = compile_desired(
        [FELIX, _checked("b", 32001), _checked("a", 32001)], "n1", [], "/x", "s"
    )
    assert desired.health_checks == {"default/a": (32001, 0)}
    assert (
        "Service/default/b: healthCheckNodePort 32001 is also default/a's; not served for this one"
        in desired.warnings
    )


def test_ports_matched_by_name_and_protocol():
    tables = compile_services(
        [
            svc(
                "dns",
                {
                    "clusterIP": "10.96.0.10",
                    "ports": [
                        {"name": "dns", "port": 53, "protocol": "UDP"},
                        {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
                    ],
                },
            ),
            eps("dns", [ep("10.0.0.5")], ports=(("dns", 5353, "UDP"), ("dns-tcp", 5354, "TCP"))),
        ],
        "n1",
        [],
    )
    got = {p.frontends[0].label: [(b.ip, b.port) for b in p.backends] for p in tables.ports}
    assert got == {
        "10.96.0.10:53/udp": [("10.0.0.5", 5353)],
        "10.96.0.10:53/tcp": [("10.0.0.5", 5354)],
    }


def test_service_ids_are_stable_when_others_come_and_go():
    a = svc("a", {"clusterIP": "10.96.0.1", "ports": [HTTP]})
    b = svc("b", {"clusterIP": "10.96.0.2", "ports": [HTTP]})
    alone = compile_services([a], "n1", []).ports[0].svc_id
    together = {p.service: p.svc_id for p in compile_services([a, b], "n1", []).ports}
    assert together["default/a:http/tcp"] == alone


FELIX = Resource(
    "FelixConfiguration",
    "default",
    None,
    {
        "kind": "FelixConfiguration",
        "metadata": {"name": "default"},
        "spec": {"bpfEnabled": True, "bpfMapSizeNATBackend": 2},
    },
    "f.yaml",
    1,
)


ROOMY_FELIX = Resource(  # the default map sizes
    "FelixConfiguration",
    "default",
    None,
    {"kind": "FelixConfiguration", "metadata": {"name": "default"}, "spec": {"bpfEnabled": True}},
    "f.yaml",
    1,
)


def test_nat_entries_in_desired_state_and_overflow_is_an_error():
    from reconciler.cli.render import change_line
    from reconciler.plan.diff import diff
    from reconciler.plan.state import ObservedState

    web = svc("web", {"clusterIP": "10.96.0.1", "ports": [HTTP]})
    desired = compile_desired(
        [FELIX, web, eps("web", [ep("10.0.0.2"), ep("10.0.0.3")])],
        "n1",
        [Link("eth0", 2, ("192.168.1.10",))],
        "/sys/fs/bpf/x",
        "src",
    )
    assert desired.errors == ()
    assert len(desired.tables["rcl_nat_fe"]) == 1 and len(desired.tables["rcl_nat_be"]) == 2
    changes = {c.address: c for c in diff(desired, ObservedState({}))}
    fe = changes["map/rcl_nat_fe/10.96.0.1:80/tcp"]
    assert fe.after is not None and fe.after["count"] == 2
    backends = sorted(a for a in changes if a.startswith("map/rcl_nat_be/"))
    assert [changes[a].after for a in backends] == [
        {"ip": "10.0.0.2", "port": 8080},
        {"ip": "10.0.0.3", "port": 8080},
    ]
    line = change_line(changes[backends[1]])
    assert line.endswith("(nat/10.96.0.1:80/tcp backend 1, default/web:http/tcp)")
    assert change_line(fe).endswith("affinity_timeout_s=0  (default/web:http/tcp)")
    # once applied, the same tables observed back mean no changes at all
    assert diff(desired, ObservedState(dict(desired.objects), (), desired.tables)) == ()
    too_many = compile_desired(
        [FELIX, web, eps("web", [ep(f"10.0.0.{i}") for i in range(2, 5)])],
        "n1",
        [],
        "/sys/fs/bpf/x",
        "src",
    )
    assert too_many.errors == (  # refused before compiling, at the field (config_limits)
        "f.yaml:1: FelixConfiguration/default: spec.bpfMapSizeNATBackend: 2 is too small for 3 "
        "backends (each Service port's ready endpoints, where no topology hint lets a node pick "
        "fewer; a Local traffic policy adds a list of a node's own); raise it to at least 3, "
        "with room to grow",
    )


def cond(ip, node="n1", **conditions):
    return {"addresses": [ip], "nodeName": node, "conditions": conditions}


TERMINATING = {"ready": False, "serving": True, "terminating": True}


def test_serving_terminating_endpoints_are_the_fallback_when_none_is_ready():
    """kube-proxy (KEP-1669): ready endpoints first; with none ready in a policy's
    scope, those still serving while they terminate; never not-serving ones."""
    spec = {"clusterIP": "10.96.0.1", "ports": [HTTP]}
    some_ready = [cond("10.0.0.2", **TERMINATING), cond("10.0.0.3", "n2", ready=True)]
    (port,) = compile_services([svc("web", spec), eps("web", some_ready)], "n1", []).ports
    assert [b.ip for b in port.backends] == ["10.0.0.3"]  # the ready one only
    none_ready = [
        cond("10.0.0.2", **TERMINATING),
        cond("10.0.0.3", "n2", ready=False, serving=False, terminating=True),
        cond("10.0.0.4", "n2", ready=False),  # not ready, serving defaults to ready: no
    ]
    (port,) = compile_services([svc("web", spec), eps("web", none_ready)], "n1", []).ports
    assert [b.ip for b in port.backends] == ["10.0.0.2"]
    assert port.local_list is None  # the local choice is the local part: no split


def test_local_policy_falls_back_on_its_own_and_gets_its_own_list():
    """ETP Local during a rolling update: this node's only pod is terminating but
    still serving, ready pods run elsewhere. Cluster-wide traffic goes to the ready
    ones; local-policy frontends to the terminating local pod, via a second id."""
    from reconciler.compile.services import service_fragments
    from reconciler.datapath.maps.codecs import be_key, be_value, fe_key
    from tests.support.nat_records import Frontend as FeVal

    spec = {
        "clusterIP": "10.96.0.1",
        "type": "NodePort",
        "externalTrafficPolicy": "Local",
        "ports": [{**HTTP, "nodePort": 30080}],
    }
    endpoints = [cond("10.0.0.2", **TERMINATING), cond("10.0.0.3", "n2"), cond("10.0.0.4", "n2")]
    resources = [svc("web", spec), eps("web", endpoints)]
    (port,) = compile_services(resources, "n1", ["192.168.1.10"]).ports
    assert [b.ip for b in port.backends] == ["10.0.0.3", "10.0.0.4"]
    assert port.local_list is not None
    local_id, local = port.local_list
    assert [b.ip for b in local] == ["10.0.0.2"] and local_id != port.svc_id
    by_label = {f.label: f for f in port.frontends}
    assert by_label["10.96.0.1:80/tcp"].svc_id == port.svc_id  # cluster policy
    assert by_label["192.168.1.10:30080/tcp"].svc_id == local_id  # ETP Local
    (fragment,) = service_fragments(resources, "n1", ["192.168.1.10"]).values()
    values = {key: value for key, value, _, _ in fragment.frontends}
    nodeport = FeVal.decode(values[fe_key("192.168.1.10", 30080, "tcp")])
    assert (nodeport.svc_id, nodeport.count, nodeport.local_count) == (local_id, 1, 1)
    cluster = FeVal.decode(values[fe_key("10.96.0.1", 80, "tcp")])
    assert (cluster.svc_id, cluster.count, cluster.local_count) == (port.svc_id, 2, 0)
    assert dict(fragment.backends) == {
        be_key(port.svc_id, 0): be_value("10.0.0.3", 8080),
        be_key(port.svc_id, 1): be_value("10.0.0.4", 8080),
        be_key(local_id, 0): be_value("10.0.0.2", 8080),
    }
    assert fragment.backend_count == 3
    # once the local pod is ready again, one list serves both policies
    endpoints[0] = cond("10.0.0.2")
    (port,) = compile_services([svc("web", spec), eps("web", endpoints)], "n1", []).ports
    assert port.local_list is None and [b.ip for b in port.backends][0] == "10.0.0.2"


def test_backends_of_finds_by_key_what_a_scan_finds():
    """Conntrack hygiene looks a few services' backends up by key instead of
    scanning the whole table; both must name the same backends, local lists
    (their own ids) included, and nothing of other services."""
    from reconciler.apply.conntrack_gc import backends_of, live_backends
    from reconciler.compile.services import service_fragments
    from reconciler.datapath.maps.nat_types import BE_KEY

    spec = {"clusterIP": "10.96.0.1", "type": "NodePort", "externalTrafficPolicy": "Local",
            "ports": [{**HTTP, "nodePort": 30080}]}  # fmt: skip
    web = [cond("10.0.0.2", **TERMINATING), cond("10.0.0.3", "n2"), cond("10.0.0.4", "n2")]
    other = [ep(f"10.0.1.{i}") for i in range(5)]
    resources = [svc("web", spec), eps("web", web), svc("db", {**spec, "clusterIP": "10.96.0.2",
        "ports": [{**HTTP, "nodePort": 30081}]}), eps("db", other)]  # fmt: skip
    table = {k: v for f in service_fragments(resources, "n1", ["192.168.1.10"]).values()
             for k, v in f.backends}  # fmt: skip
    ids = {live[0] for live in live_backends(table.items())}
    assert len(ids) == 3  # web's cluster list, web's local list, db
    for some in ({min(ids)}, ids - {min(ids)}, ids, set()):
        found = backends_of(table, some)
        assert live_backends(found) == live_backends(table.items(), some)
        assert len(found) == sum(1 for k in table if BE_KEY.unpack(k)[0] in some)
