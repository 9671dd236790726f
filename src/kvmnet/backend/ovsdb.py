"""The one door to OVN's northbound database, through ovsdbapp.

`fetch_nb` copies the rows kvmnet looks at into plain dicts; `parse_nb` (pure)
turns them into an NbState. `NbClient.apply` runs one planned Change as one
transaction, through a `write` callable that counts it (apply passes libvirt's
Connection.write, so `Report.writes` counts northbound transactions too).

ovsdbapp keeps its connection in a *class* attribute of the API class (the
first one set wins, for the whole process); each NbClient therefore makes its
own subclass, so two databases (or a reconnect) never share a connection.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeVar

from kvmnet.errors import LiveError
from kvmnet.model.overlay import (
    NETWORK_KEY,
    Change,
    Dhcp,
    NbState,
    Port,
    Router,
    RouterPort,
    Switch,
    owned,
)
from kvmnet.model.spec import Ovn

T = TypeVar("T")
Raw = dict[str, list[dict[str, Any]]]
Write = Callable[[str, Callable[[], Any]], Any]
TABLES = ("Logical_Switch", "Logical_Switch_Port", "DHCP_Options", "Logical_Router",
          "Logical_Router_Port", "Gateway_Chassis", "Logical_Router_Static_Route", "NAT")
SCHEMA = "OVN_Northbound"

OVSDBAPP_MISSING = (
    "overlay networks (mode: overlay, the ovn: section) need the Python package ovsdbapp, "
    "kvmnet's optional extra: pip install 'kvmnet[ovn]' (or pipx inject kvmnet ovsdbapp)")

# ovsdbapp logs every failed transaction with a traceback; we report errors ourselves.
logging.getLogger("ovsdbapp").setLevel(logging.CRITICAL)


# -- parse (pure) ---------------------------------------------------------------

def parse_nb(raw: Raw) -> NbState:
    """Plain rows (as fetch_nb returns them) -> NbState. Of several marked rows with
    one name (or DHCP rows for one network) the first by UUID is kept, the others
    are listed as duplicates so plan removes them."""
    dup: list[Switch | Dhcp] = []
    port_switch = {}
    switches: dict[str, Switch] = {}
    ports_by_uuid = {r["_uuid"]: r["name"] for r in raw.get("Logical_Switch_Port", [])}
    for r in sorted(raw.get("Logical_Switch", []), key=lambda r: r["_uuid"]):
        sw = Switch(r["name"], dict(r["other_config"]), dict(r["external_ids"]), r["_uuid"],
                    tuple(sorted(ports_by_uuid.get(p, p) for p in r["ports"])))
        for p in r["ports"]:
            port_switch[p] = r["name"]
        cur = switches.get(sw.name)
        if cur is None or (sw.owned and not cur.owned):
            switches[sw.name] = sw
        elif sw.owned:
            dup.append(sw)
    dhcp: dict[str, Dhcp] = {}
    dhcp_net: dict[str, str] = {}
    for r in sorted(raw.get("DHCP_Options", []), key=lambda r: r["_uuid"]):
        ids = dict(r["external_ids"])
        if not owned(ids) or NETWORK_KEY not in ids:
            continue
        d = Dhcp(ids[NETWORK_KEY], r["cidr"], dict(r["options"]), ids, r["_uuid"])
        if d.network in dhcp:
            dup.append(d)
            continue
        dhcp[d.network] = d
        dhcp_net[d.uuid] = d.network
    ports: dict[str, Port] = {}
    for r in raw.get("Logical_Switch_Port", []):
        opts = r["dhcpv4_options"]
        ports[r["name"]] = Port(
            r["name"], port_switch.get(r["_uuid"], ""), tuple(r["addresses"]),
            tuple(r["port_security"]), dhcp_net.get(opts[0], "?") if opts else None,
            dict(r["external_ids"]), r["_uuid"], bool(r["up"] and r["up"][0]),
            r["dynamic_addresses"][0] if r["dynamic_addresses"] else "",
            r.get("type", ""), dict(r.get("options", {})))
    routers: dict[str, Router] = {}
    for r in sorted(raw.get("Logical_Router", []), key=lambda r: r["_uuid"]):
        lr = parse_router(r)
        if lr.name not in routers or (lr.owned and not routers[lr.name].owned):
            routers[lr.name] = lr
    return NbState(switches=switches, ports=ports, dhcp=dhcp, routers=routers,
                   duplicates=tuple(dup))


def parse_router(r: dict[str, Any]) -> Router:
    ports = tuple(sorted(
        (RouterPort(p["name"], p["mac"], tuple(sorted(p["networks"])),
                    tuple(sorted(((c, int(pr)) for c, pr in p["gateway_chassis"]),
                                 key=lambda x: -x[1])))
         for p in r["ports"]), key=lambda p: p.name))
    return Router(r["name"], dict(r["external_ids"]), ports,
                  tuple(sorted((a, b) for a, b in r["static_routes"])),
                  tuple(sorted((a, b, c) for a, b, c in r["nat"])), r["_uuid"])


# -- fetch (I/O) ----------------------------------------------------------------

def _rows(api: Any, table: str) -> Iterator[Any]:
    return iter(list(api.tables[table].rows.values()))


def _uuids(v: Any) -> list[str]:
    return [str(x.uuid) for x in v]


def fetch_nb(api: Any) -> Raw:
    """Copy the three tables out of the IDL (under its lock: the IDL thread may
    be applying an update meanwhile)."""
    with api.ovsdb_connection.lock:
        return {
            "Logical_Switch": [
                {"_uuid": str(r.uuid), "name": r.name, "other_config": dict(r.other_config),
                 "external_ids": dict(r.external_ids), "ports": _uuids(r.ports)}
                for r in _rows(api, "Logical_Switch")],
            "Logical_Switch_Port": [
                {"_uuid": str(r.uuid), "name": r.name, "addresses": list(r.addresses),
                 "port_security": list(r.port_security),
                 "dhcpv4_options": _uuids(r.dhcpv4_options),
                 "external_ids": dict(r.external_ids), "up": list(r.up),
                 "dynamic_addresses": list(r.dynamic_addresses), "type": r.type,
                 "options": dict(r.options)}
                for r in _rows(api, "Logical_Switch_Port")],
            "Logical_Router": [
                {"_uuid": str(r.uuid), "name": r.name, "external_ids": dict(r.external_ids),
                 "ports": [{"name": p.name, "mac": p.mac, "networks": list(p.networks),
                            "gateway_chassis": [(g.chassis_name, g.priority)
                                                for g in p.gateway_chassis]}
                           for p in r.ports],
                 "static_routes": [(x.ip_prefix, x.nexthop) for x in r.static_routes],
                 "nat": [(x.type, x.external_ip, x.logical_ip) for x in r.nat]}
                for r in _rows(api, "Logical_Router")],
            "DHCP_Options": [
                {"_uuid": str(r.uuid), "cidr": r.cidr, "options": dict(r.options),
                 "external_ids": dict(r.external_ids)}
                for r in _rows(api, "DHCP_Options")],
        }


class NbClient:
    """An open ovsdbapp connection to one northbound database."""

    def __init__(self, settings: Ovn, timeout: float = 30.0) -> None:
        try:  # an optional extra: only overlays need it
            from ovsdbapp.backend.ovs_idl import connection
            from ovsdbapp.schema.ovn_northbound import impl_idl
        except ImportError:
            raise LiveError(OVSDBAPP_MISSING) from None

        self.settings = settings
        remote = settings.northbound
        try:
            if remote.startswith("ssl:"):
                _ssl(settings)
            idl = connection.OvsdbIdl.from_server(remote, SCHEMA, helper_tables=TABLES)
            self._conn = connection.Connection(idl, timeout)
            api_cls = type("KvmnetNbApi", (impl_idl.OvnNbApiIdlImpl,), {})
            self.api: Any = api_cls(self._conn)
        except Exception as e:  # ovs and ovsdbapp raise many kinds
            raise LiveError(f"cannot connect to OVN northbound {remote}: {_why(e)}") from None

    def close(self) -> None:
        self._conn.stop(timeout=5)

    def read(self) -> NbState:
        return parse_nb(fetch_nb(self.api))

    # -- writes ---------------------------------------------------------------
    def apply(self, c: Change, write: Write) -> str:
        """Run one Change as one transaction, counted by `write`."""
        what = f"ovn {c.op} {c.target}"

        def txn() -> None:
            try:
                with self.api.transaction(check_error=True) as t:
                    for cmd in self._commands(c):
                        t.add(cmd)
            except LiveError:
                raise
            except Exception as e:
                raise LiveError(f"{what}: OVN northbound says: {_why(e)}") from None

        write(what, txn)
        return ""

    def _commands(self, c: Change) -> list[Any]:
        api = self.api
        if c.table == "router":  # removed, built, or rebuilt whole (its children go with it)
            cmds = [api.db_destroy("Logical_Router", c.uuid)] if c.uuid else []
            if c.router is not None:
                from kvmnet.backend.ovsdb_commands import BuildRouter

                cmds.append(BuildRouter(api, c.router))
            return cmds
        table = {"switch": "Logical_Switch", "dhcp": "DHCP_Options",
                 "port": "Logical_Switch_Port"}[c.table]
        if c.op == "remove":
            return [api.db_destroy(table, c.uuid) if c.table != "port"
                    else api.lsp_del(c.uuid, if_exists=True)]
        cols = dict(c.columns)
        if c.table == "port":
            cols["dhcpv4_options"] = self._dhcp_rows(c.dhcp_network)
        if c.op == "create":
            if c.table == "switch":
                return [api.ls_add(cols.pop("name"), **cols)]
            if c.table == "dhcp":
                return [api.db_create(table, **cols)]
            return [api.lsp_add(self._switch_uuid(c.switch), cols.pop("name"), **cols)]
        cmds = [api.db_set(table, c.uuid, *cols.items())]
        for col, keys in c.remove_keys.items():
            if keys:
                cmds.append(api.db_remove(table, c.uuid, col, *keys))
        return cmds

    def _switch_uuid(self, name: str) -> Any:
        for r in _rows(self.api, "Logical_Switch"):
            if r.name == name and owned(r.external_ids):
                return r.uuid
        raise LiveError(f"logical switch {name} (marked by kvmnet) is gone from OVN "
                        "northbound: run plan again")

    def _dhcp_rows(self, network: str | None) -> list[Any]:
        if network is None:
            return []
        for r in _rows(self.api, "DHCP_Options"):
            ids: Mapping[str, str] = r.external_ids
            if owned(ids) and ids.get(NETWORK_KEY) == network:
                return [r]
        raise LiveError(f"the DHCP options of {network} (marked by kvmnet) are gone from OVN "
                        "northbound: run plan again")


def _ssl(s: Ovn) -> None:
    from ovs.stream import Stream

    missing = [k for k in ("private_key", "certificate", "ca_cert") if not getattr(s, k)]
    if missing:
        raise LiveError(f"ovn.northbound {s.northbound} is ssl: the spec needs ovn."
                        f"{', ovn.'.join(missing)} (files)")
    Stream.ssl_set_private_key_file(s.private_key)
    Stream.ssl_set_certificate_file(s.certificate)
    Stream.ssl_set_ca_cert_file(s.ca_cert)


def _why(e: BaseException) -> str:
    text = str(e) or type(e).__name__
    cause = e.__cause__ or e.__context__
    if cause is not None and str(cause) and str(cause) not in text:
        text += f" ({cause})"
    return text


@contextmanager
def nb_client(settings: Ovn) -> Iterator[NbClient]:
    c = NbClient(settings)
    try:
        yield c
    finally:
        c.close()


def read_nb(settings: Ovn) -> NbState:
    with nb_client(settings) as c:
        return c.read()


class NbSessions:
    """The northbound connections one apply uses, opened on first use."""

    def __init__(self) -> None:
        self._open: dict[Ovn, NbClient] = {}

    def apply(self, c: Change, write: Write) -> str:
        client = self._open.get(c.nb)
        if client is None:
            client = self._open[c.nb] = NbClient(c.nb)
        return client.apply(c, write)

    def close(self) -> None:
        for c in self._open.values():
            c.close()
        self._open.clear()
