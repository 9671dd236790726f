"""The host's own IPv6 as plan and doctor see it (issue 23): which addresses came by
SLAAC, each link's accept_ra, IPv6 forwarding and address generation mode (the
kernel's per-link devconf in IFLA_AF_SPEC, read by parse.netlink), and the doctor
check that a host taking its address by router advertisements while it forwards
has accept_ra=2."""

from __future__ import annotations

from typing import Any

from kvmnet.doctor.checks import Facts
from kvmnet.doctor.links import check_accept_ra
from kvmnet.model.live import HostLink, HostState
from kvmnet.model.spec import Spec
from kvmnet.parse.netlink import parse_host

SLAAC = "2001:db8:163::5054:ff:fe00:1/64"


def _link(index: int, name: str, accept_ra: int, forwarding: int, mode: int = 0
          ) -> dict[str, Any]:
    return {"index": index, "ifname": name, "flags": 1,
            "af_spec": {"AF_INET6": {"inet6_conf": {"accept_ra": accept_ra,
                                                    "forwarding": forwarding},
                                     "IFLA_INET6_ADDR_GEN_MODE": mode}}}


def _addr(index: int, cidr: str, flags: int) -> dict[str, Any]:
    a, n = cidr.split("/")
    return {"index": index, "address": a, "prefixlen": int(n), "flags": flags}


def test_parse_reads_devconf_and_dynamic_addresses() -> None:
    h = parse_host([_link(2, "eth0", 2, 1, mode=2), {"index": 3, "ifname": "old"}],
                   [_addr(2, SLAAC, 0x100), _addr(2, "2001:db8:163::9/64", 0x80),
                    _addr(2, "10.163.0.2/24", 0x80)], [], default_accept_ra=1)
    eth0 = h.links["eth0"]
    assert (eth0.accept_ra, eth0.forwarding6, eth0.addr_gen_mode) == (2, True, 2)
    assert eth0.dynamic == (SLAAC,)
    assert len(eth0.addresses) == 3
    old = h.links["old"]   # a link without IPv6 (or a dict without af_spec)
    assert (old.accept_ra, old.forwarding6, old.addr_gen_mode, old.dynamic) == (
        None, None, None, ())
    assert h.default_accept_ra == 1


def _facts(*links: HostLink, spec: Spec | None = None) -> Facts:
    return Facts(uri="qemu:///system", host=HostState({ln.name: ln for ln in links}),
                 spec=spec, spec_file="site.yaml")


def _eth0(accept_ra: int, forwarding: bool, dynamic: tuple[str, ...] = (SLAAC,)
          ) -> HostLink:
    return HostLink("eth0", 2, "", None, True, addresses=(SLAAC,), dynamic=dynamic,
                    accept_ra=accept_ra, forwarding6=forwarding)


def test_accept_ra_1_while_forwarding_with_a_slaac_address_warns_with_the_fix() -> None:
    c = check_accept_ra(_facts(_eth0(1, True)))
    assert c.status == "warn"
    assert "eth0 has 2001:db8:163::5054:ff:fe00:1/64 by SLAAC" in c.message
    assert c.fix.splitlines() == [
        "sysctl -w net.ipv6.conf.eth0.accept_ra=2",
        "echo 'net.ipv6.conf.eth0.accept_ra = 2' >> /etc/sysctl.d/60-kvmnet-accept-ra.conf"
        "   # persist"]


def test_accept_ra_fine_cases() -> None:
    assert check_accept_ra(_facts(_eth0(2, True))).status == "ok"      # 2: takes them
    assert check_accept_ra(_facts(_eth0(1, False))).status == "ok"     # not forwarding
    assert check_accept_ra(_facts(_eth0(0, True))).status == "ok"      # a daemon's job
    assert check_accept_ra(_facts(_eth0(1, True, dynamic=()))).status == "ok"  # no SLAAC
    assert check_accept_ra(Facts(uri="qemu:///system", host_error="x")).status == "skip"


def test_accept_ra_of_a_bridge_the_spec_wants_slaac_on() -> None:
    spec = Spec.model_validate({"host": {"bridges": {"br0": {"slaac": True}}}})
    br0 = HostLink("br0", 4, "bridge", None, True, accept_ra=0, forwarding6=False)
    c = check_accept_ra(_facts(br0, spec=spec))
    assert c.status == "warn" and "br0 has slaac: true in site.yaml, but accept_ra=0" \
        in c.message
    ok = HostLink("br0", 4, "bridge", None, True, accept_ra=1, forwarding6=False)
    assert check_accept_ra(_facts(ok, spec=spec)).status == "ok"


def test_accept_ra_fix_runs_in_the_namespace() -> None:
    f = Facts(uri="qemu:///system", host=HostState({"eth0": _eth0(1, True)}), netns="kvt-x")
    assert check_accept_ra(f).fix.splitlines()[0] == (
        "ip netns exec kvt-x sysctl -w net.ipv6.conf.eth0.accept_ra=2")
