"""Checks of overlay networks (OVN): what an overlay cannot have, and its reservations."""

from __future__ import annotations

from kvmnet.model.derive import nic_macs
from kvmnet.model.spec import Network, Spec
from kvmnet.spec.findings import Findings
from kvmnet.spec.positions import Path_

OVERLAY_UNUSED = ("bridge", "stp", "delay", "domain_local", "allow_guest_ipv6", "ipv6",
                  "more_ips", "dns", "devices", "uplink")


def overlay(f: Findings, spec: Spec) -> None:
    """An overlay network is a logical switch with OVN's DHCP: an IPv4 subnet with a
    DHCP range, written to the northbound database the spec names under ovn:."""
    macs = nic_macs(spec)
    for name, net in spec.networks.items():
        base: Path_ = ("networks", name)
        if net.router is not None and net.mode != "overlay":
            f.error(base + ("router",), "router: is an OVN logical router and applies to mode: "
                    f"overlay only; a {net.mode} network's host routes for it", key=True,
                    refs=[base + ("mode",)])
        if net.mode != "overlay":
            continue
        _router(f, base, net)
        if spec.ovn is None:
            f.error(base + ("mode",), "an overlay network lives in OVN: add ovn: {northbound: "
                    "unix:/run/ovn/ovnnb_db.sock} (or tcp:HOST:6641) at the top of the spec",
                    refs=[("ovn",)])
        for key in OVERLAY_UNUSED:
            if getattr(net, key):
                f.error(base + (key,), f"{key} does not apply to an overlay network (OVN "
                        "serves it with a logical switch and its own DHCP): remove it",
                        key=True)
        _ipv4(f, spec, name, net, macs)
    for gname, g in spec.guests.items():
        for i, nic in enumerate(g.interfaces):
            onet = spec.networks.get(nic.network or "")
            if onet is not None and onet.mode == "overlay" and nic.portgroup:
                f.error(("guests", gname, "interfaces", i, "portgroup"), "a NIC on an overlay "
                        "network has no portgroup (it is a port of OVN's br-int): remove it",
                        refs=[("networks", nic.network or "", "mode")])


def _router(f: Findings, base: Path_, net: Network) -> None:
    """An overlay's logical router: its external address outside the overlay's
    subnet, its gateway inside the external network."""
    if net.router is not None and net.ipv4 is not None:
        ext = net.router.external
        if ext.address.version != 4 or ext.address.network.overlaps(
                net.ipv4.address.network):
            f.error(base + ("router", "external", "address"), f"{ext.address} must be an "
                    f"IPv4 address outside {net.ipv4.address.network} (the router's "
                    "address on the external network)", refs=[base + ("ipv4", "address")])
        elif ext.gateway is not None and ext.gateway not in ext.address.network:
            f.error(base + ("router", "external", "gateway"), f"gateway {ext.gateway} is "
                    f"not in {ext.address.network}, the external network")


def _ipv4(f: Findings, spec: Spec, name: str, net: Network,
          macs: dict[tuple[str, int], str]) -> None:
    """An overlay's IPv4: there, with a DHCP range, no routes/tftp/bootp, and
    reservations only for the spec's NICs on it."""
    base: Path_ = ("networks", name)
    if net.ipv4 is None:
        f.error(base + ("mode",), "an overlay network needs ipv4: {address: "
                "10.240.1.1/24, dhcp: 10.240.1.100-10.240.1.199} (OVN's DHCP serves it)",
                refs=[base + ("ipv4",)])
        return
    if not net.ipv4.dhcp:
        f.error(base + ("ipv4",), "an overlay network needs a DHCP range: add dhcp: "
                "START-END (OVN's DHCP hands out addresses from it)", key=True)
    for key in ("routes", "tftp", "bootp"):
        if getattr(net.ipv4, key):
            f.error(base + ("ipv4", key), f"ipv4.{key} does not apply to an overlay "
                    "network: remove it", key=True)
    on_net = {macs[(g, i)] for g, guest in spec.guests.items()
              for i, nic in enumerate(guest.interfaces) if nic.network == name}
    for i, h in enumerate(net.ipv4.hosts):
        if h.mac is None or h.mac not in on_net:
            f.warn(base + ("ipv4", "hosts", i), "OVN reserves addresses only for guest "
                   "NICs in the spec: no NIC on this network has this MAC, so this "
                   "reservation does nothing; give the guest's NIC ipv4: instead",
                   refs=[("guests",)])
