"""ovsdbapp commands of kvmnet's own (imported only when a transaction needs one:
ovsdbapp takes ~0.1 s to import)."""

from __future__ import annotations

from typing import Any

from ovsdbapp.backend.ovs_idl.command import BaseCommand

from kvmnet.model.overlay import Router


class BuildRouter(BaseCommand):  # type: ignore[misc]
    """Insert a whole Logical_Router (ports, gateway chassis, routes, NAT) in the
    running transaction; its children are unshared, so removing the router
    (db_destroy) takes them along and a changed router is rebuilt atomically."""

    def __init__(self, api: Any, router: Router) -> None:
        super().__init__(api)
        self.router = router

    def run_idl(self, txn: Any) -> None:
        t, r = self.api.tables, self.router
        lr = txn.insert(t["Logical_Router"])
        lr.name = r.name
        lr.external_ids = dict(r.external_ids)
        ports = []
        for p in r.ports:
            lrp = txn.insert(t["Logical_Router_Port"])
            lrp.name, lrp.mac, lrp.networks = p.name, p.mac, list(p.networks)
            gcs = []
            for chassis, prio in p.gateway_chassis:
                gc = txn.insert(t["Gateway_Chassis"])
                gc.name, gc.chassis_name, gc.priority = f"{p.name}-{chassis}", chassis, prio
                gcs.append(gc)
            lrp.gateway_chassis = gcs
            ports.append(lrp)
        lr.ports = ports
        routes = []
        for prefix, nexthop in r.routes:
            sr = txn.insert(t["Logical_Router_Static_Route"])
            sr.ip_prefix, sr.nexthop = prefix, nexthop
            routes.append(sr)
        lr.static_routes = routes
        nats = []
        for kind, ext, logical in r.nat:
            n = txn.insert(t["NAT"])
            n.type, n.external_ip, n.logical_ip = kind, ext, logical
            nats.append(n)
        lr.nat = nats
        self.result = lr.uuid
