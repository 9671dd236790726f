"""A gratuitous ARP from a bridge for each of its IPv4 addresses.

After a network restart the guests' neighbour entry for their gateway (the bridge's
address) may name a MAC the new bridge no longer has (a `mac:` change, or a network
without one whose bridge libvirt gave a new MAC): the guest keeps sending to it, and
nothing answers, until the entry goes stale and is probed again (tens of seconds).
One gratuitous ARP request (sender and target: the bridge's address) updates every
guest that has the entry (Linux does so for an entry it already holds, whatever its
arp_accept), and changes nothing for the others.
"""

from __future__ import annotations

import socket
import struct
from contextlib import AbstractContextManager, nullcontext

from kvmnet.backend.host import iproute
from kvmnet.backend.netns import entered

ETH_P_ARP = 0x0806
BROADCAST = b"\xff" * 6


def garp_frame(mac: bytes, ip: bytes) -> bytes:
    """Ethernet broadcast + ARP request: who-has IP, tell IP (MAC): a gratuitous ARP."""
    eth = BROADCAST + mac + struct.pack("!H", ETH_P_ARP)
    arp = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + mac + ip + b"\x00" * 6 + ip
    return eth + arp


def announce(bridge: str, netns: str | None = None) -> int:
    """Send one gratuitous ARP per IPv4 address of `bridge`; how many were sent."""
    with iproute(netns) as ipr:
        found = ipr.link_lookup(ifname=bridge)
        if not found:
            return 0
        mac_text = ipr.get_links(found[0])[0].get_attr("IFLA_ADDRESS")
        ips = [a.get_attr("IFA_ADDRESS")
               for a in ipr.get_addr(index=found[0], family=socket.AF_INET)]
    if not mac_text or not ips:
        return 0
    mac = bytes.fromhex(str(mac_text).replace(":", ""))
    where: AbstractContextManager[None] = entered(netns) if netns else nullcontext()
    with where:
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    with sock:
        sock.bind((bridge, ETH_P_ARP))
        for ip in ips:
            sock.send(garp_frame(mac, socket.inet_aton(str(ip))))
    return len(ips)
