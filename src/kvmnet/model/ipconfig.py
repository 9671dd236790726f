"""A network's address blocks and what libvirt's dnsmasq serves on them: DHCP, DNS, routes.

Part of the one model (model.spec, which re-exports these). Each field's description is
what an editor shows for the key and what docs/SPEC.md lists; write it for the person
writing the YAML.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, WithJsonSchema, field_validator, model_validator

from kvmnet.model.base import Model, at_least_one, one_or_list, or_text
from kvmnet.model.types import (
    Addr,
    DnsName,
    Duid,
    Iface,
    IPRange,
    Mac,
    Net,
    Text,
    parse_range,
)
from kvmnet.model.value_schema import ADDR_SCHEMA, IPRANGE_SCHEMA, LEASE_FORMS

# How libvirt XML writes a prefix: prefix='24', netmask='255.255.255.0', or nothing
# (libvirt then assumes the classful prefix, /64 for IPv6); libvirt keeps the form given.
PrefixForm = Literal["prefix", "netmask", "none"]
_PREFIX_FORM = ("How libvirt's XML writes the prefix: prefix, netmask or none (libvirt "
                "then assumes the classful one). `kvmnet import` keeps the form it found.")


class Lease(Model):
    """A DHCP lease time: 1h, 30m, 600s, 3600 (seconds) or infinite."""

    model_config = ConfigDict(json_schema_extra=or_text(*LEASE_FORMS))

    expiry: int = Field(ge=0, description="How long a lease lasts, in `unit`s; 0: infinite.")
    unit: Literal["seconds", "minutes", "hours"] = Field(
        "minutes", description="The unit of `expiry`.")

    @model_validator(mode="before")
    @classmethod
    def _text(cls, v: Any) -> Any:
        if isinstance(v, bool):
            raise ValueError("a lease time is like 1h, 30m, 600s or infinite")
        if isinstance(v, int):
            return {"expiry": v, "unit": "seconds"}
        if isinstance(v, str):
            t = v.strip().lower()
            if t in ("infinite", "0"):
                return {"expiry": 0}
            units = {"s": "seconds", "m": "minutes", "h": "hours"}
            if t[-1:] in units and t[:-1].isascii() and t[:-1].isdigit():
                return {"expiry": int(t[:-1]), "unit": units[t[-1]]}
            if t.isascii() and t.isdigit():
                return {"expiry": int(t), "unit": "seconds"}
            raise ValueError(f"{v!r} is not a lease time: write e.g. 1h, 30m, 600s or infinite")
        return v

    def __str__(self) -> str:
        if self.expiry == 0:
            return "infinite"
        return f"{self.expiry}{self.unit[0]}"


class DhcpRange(Model):
    """A pool of addresses DHCP hands out: START-END, or a mapping with its own lease time."""

    model_config = ConfigDict(json_schema_extra=or_text(IPRANGE_SCHEMA))

    start: Addr = Field(description="The first address of the pool.",
                        examples=["192.168.122.2"])
    end: Addr = Field(description="The last address of the pool.",
                      examples=["192.168.122.254"])
    lease_time: Lease | None = Field(None, description="Lease time for this pool; default: "
                                     "the block's `lease_time`, else dnsmasq's.")

    @model_validator(mode="before")
    @classmethod
    def _text(cls, v: Any) -> Any:
        if isinstance(v, str):
            r = parse_range(v)
            return {"start": r.start, "end": r.end}
        return v

    def __str__(self) -> str:
        return str(IPRange(self.start, self.end))

    def __contains__(self, addr: object) -> bool:
        return addr in IPRange(self.start, self.end)


class DhcpHost(Model):
    """A DHCP reservation: a fixed address for a MAC (IPv4) or a client id or name (IPv6)."""

    ip: Addr = Field(description="The address reserved.", examples=["192.168.122.20"])
    mac: Mac | None = Field(None, description="The client's MAC (IPv4).")
    name: DnsName | None = Field(None, description="The client's host name.",
                                 examples=["db1"])
    id: Duid | None = Field(None, description="The client's DHCPv6 client id (DUID), IPv6.")
    lease_time: Lease | None = Field(None, description="Lease time of this reservation.")


class StaticRoute(Model):
    """A route libvirt adds on the host while the network runs: `to` via `via`."""

    to: Net = Field(description="The destination subnet.", examples=["10.20.0.0/16"])
    via: Addr = Field(description="The next hop, on this network (e.g. a guest acting as "
                      "a router).", examples=["192.168.122.2"])
    metric: int | None = Field(None, ge=1, description="Route metric (1 or more).",
                               examples=[100])
    xml_prefix: PrefixForm = Field("prefix", description=_PREFIX_FORM)


class IPConfig(Model):
    """An address block of a network: the host's address in it, and DHCP on it."""

    address: Iface = Field(description="The host's address on the network, with the "
                           "prefix: the guests' gateway, and the network's subnet.",
                           examples=["192.168.122.1/24"])
    dhcp: list[DhcpRange] = Field(
        default_factory=list, json_schema_extra=one_or_list,
        description="DHCP pools: one START-END, or a list of them.",
        examples=["192.168.122.2-192.168.122.254"])
    hosts: list[DhcpHost] = Field(default_factory=list, description="DHCP reservations. "
                                  "A guest NIC's `ipv4:` adds one by itself.")
    lease_time: Lease | None = Field(None, description="Lease time of every pool that does "
                                     "not say its own: 1h, 30m, 600s, infinite.",
                                     examples=["1h"])
    routes: list[StaticRoute] = Field(default_factory=list, description="Static routes "
                                      "libvirt adds on the host, to subnets behind guests.")
    tftp: Text | None = Field(None, description="Root directory of dnsmasq's TFTP server "
                              "(network boot).", examples=["/srv/tftp"])
    bootp: dict[Text, Text] | None = Field(None, description="Network boot: `file` (the "
                                           "boot file) and `server` (the TFTP server).",
                                           examples=[{"file": "pxelinux.0"}])
    slaac: bool | None = Field(None, description="IPv6: guests also make their own "
                               "addresses from the host's router advertisements (SLAAC). "
                               "Not set: yes on a block without DHCPv6 (no `dhcp:` and no "
                               "reservations), no on one with it (libvirt then advertises "
                               "DHCPv6 only); true with `dhcp:`: both (kvmnet adds the "
                               "dnsmasq option libvirt has no XML for). SLAAC needs a /64.",
                               examples=[True])
    xml_prefix: PrefixForm = Field("prefix", description=_PREFIX_FORM)

    @field_validator("dhcp", mode="before")
    @classmethod
    def _one_range(cls, v: Any) -> Any:
        return [v] if isinstance(v, str | dict) else v


class DnsHost(Model):
    """Names dnsmasq answers with an address."""

    ip: Addr = Field(description="The address the names resolve to.",
                     examples=["192.168.122.5"])
    names: list[DnsName] = Field(min_length=1, description="One name or more.",
                                 examples=[["nas", "nas.lan"]])


class DnsSrv(Model):
    """A DNS SRV record: where a service is (RFC 2782)."""

    service: DnsName = Field(description="The service's name, without '_'.",
                             examples=["ldap"])
    protocol: Literal["tcp", "udp"] = Field(description="Its protocol.")
    domain: DnsName | None = Field(None, description="The domain the record is in.")
    target: DnsName | None = Field(None, description="The host that serves it.",
                                   examples=["ldap.example.lan"])
    port: int | None = Field(None, ge=0, le=65535, description="The port it listens on.",
                             examples=[389])
    priority: int | None = Field(None, ge=0, le=65535, description="Lower is tried first.")
    weight: int | None = Field(None, ge=0, le=65535, description="Share among equal "
                               "priorities.")


class DnsTxt(Model):
    """A DNS TXT record."""

    name: DnsName = Field(description="The record's name.", examples=["example"])
    value: Text = Field(description="Its text.", examples=["v=spf1 -all"])


class DnsForwarder(Model):
    """An upstream DNS server: `addr` for every name, or only for `domain`. `addr: none`
    with a `domain`: that domain is answered locally or not at all, never upstream
    (dnsmasq's local=/DOMAIN/, written by kvmnet). A plain address is an `addr`."""

    model_config = ConfigDict(json_schema_extra=or_text(
        ADDR_SCHEMA, also=at_least_one("addr", "domain")))

    addr: Annotated[Addr | None, WithJsonSchema(
        {"anyOf": [ADDR_SCHEMA, {"const": "none"}, {"type": "null"}]})] = Field(
        None, description="The upstream server; `none`: `domain` is answered locally "
        "only (the same as `local_only: true`). (A `domain` without `addr` is libvirt's "
        "own form, which dnsmasq forwards to the other servers as usual.)",
        examples=["192.168.1.254"])
    domain: DnsName | None = Field(None, description="Only names in this domain.",
                                   examples=["corp.example"])
    local_only: bool = Field(False, description="`domain` is answered locally or not at "
                             "all, never upstream (what `addr: none` says).")

    @model_validator(mode="before")
    @classmethod
    def _text(cls, v: Any) -> Any:
        if isinstance(v, str):
            return {"addr": v}
        if isinstance(v, dict) and v.get("addr") == "none":
            return {**{k: x for k, x in v.items() if k != "addr"}, "local_only": True}
        return v

    @model_validator(mode="after")
    def _something(self) -> DnsForwarder:
        if self.local_only and (self.domain is None or self.addr is not None):
            raise ValueError("addr: none (local_only) needs domain: NAME, the domain "
                             "answered locally only, and no address")
        if self.addr is None and self.domain is None:
            raise ValueError("a forwarder needs addr: IP, domain: NAME, or both")
        return self


class DnsWildcard(Model):
    """Every name in `domain` (and the domain itself) answers `ip`: dnsmasq's
    address=/DOMAIN/IP. A name dnsmasq knows itself (a DNS host, a guest's lease) keeps
    its own address."""

    domain: DnsName = Field(description="The domain whose names all resolve to `ip`.",
                            examples=["apps.lab.example"])
    ip: Addr = Field(description="The address they resolve to.",
                     examples=["192.168.122.10"])


class DnsCname(Model):
    """An alias: `name` is another name for `target` (dnsmasq's cname=NAME,TARGET).
    dnsmasq answers it only when it knows `target` itself: a DNS host, a DHCP
    reservation's or lease's name, not a name upstream."""

    name: DnsName = Field(description="The alias.", examples=["www.lab.example"])
    target: DnsName = Field(description="The name it stands for.",
                            examples=["web1.lab.example"])


class Dns(Model):
    """DNS served by the network's dnsmasq to its guests."""

    enable: bool = Field(True, description="Run DNS at all (false: DHCP only).")
    forward_plain_names: bool | None = Field(None, description="Forward names without a "
                                             "dot upstream (libvirt's default: yes).")
    hosts: list[DnsHost] = Field(default_factory=list, description="Extra host names.")
    forwarders: list[DnsForwarder] = Field(default_factory=list, description="Upstream "
                                           "servers instead of the host's own.")
    srv: list[DnsSrv] = Field(default_factory=list, description="SRV records.")
    txt: list[DnsTxt] = Field(default_factory=list, description="TXT records.")
    wildcards: list[DnsWildcard] = Field(default_factory=list, description="Whole domains "
                                         "answering one address (dnsmasq option, written "
                                         "by kvmnet; a change restarts the network).")
    cnames: list[DnsCname] = Field(default_factory=list, description="Aliases of names "
                                   "dnsmasq knows (dnsmasq option, written by kvmnet; a "
                                   "change restarts the network).")
    ptr: bool | None = Field(None, description="PTR records (reverse names) for every DHCP "
                      "reservation with a name, as NAME.DOMAIN (dnsmasq option, written by "
                      "kvmnet: a reservation change then restarts the network).")
