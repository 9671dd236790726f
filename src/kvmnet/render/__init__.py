"""render: pure Spec -> artefacts. `render_all` returns {relative path: text}.

Layout of `kvmnet render FILE -o DIR` (documented in the README):
  networks/NAME.xml                        libvirt network XML (virsh net-define)
  guests/GUEST/nicN.xml                    <interface> XML per guest NIC
  host/ifupdown/etc/network/interfaces.d/  host bridge config, one tree per renderer
  host/netplan/etc/netplan/
  host/networkmanager/etc/NetworkManager/system-connections/
  host/networkd/etc/systemd/network/
  routes/NETWORK.txt                       the route the upstream router needs
  firewall/forwards.nft.json               port forwards: table inet kvmnet (nft -j -f)
  firewall/accept-iptables.rules           ... the accept before libvirt's reject, iptables
  firewall/accept-nftables.json            ... or nftables backend (render/firewall.py)
  firewall/forwards.json                   ... the state file the libvirt hook reads
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kvmnet.model.spec import Spec


def render_all(spec: Spec, host: str = "") -> dict[str, str]:
    """Every artefact; `host`: what generated MACs are salted with besides the owner
    (model.uri.mac_host of the URI apply will use)."""
    # imported here: `import kvmnet.render.network` (validate, plan) runs this
    # package first and needs none of the host renderers
    from kvmnet.model.derive import nic_macs
    from kvmnet.render.firewall import render_firewall
    from kvmnet.render.hostconf import RENDERERS
    from kvmnet.render.interface import render_interfaces
    from kvmnet.render.network import network_xml
    from kvmnet.render.routes import render_routes

    files: dict[str, str] = {}
    macs = nic_macs(spec, host=host)
    for name, net in spec.networks.items():
        if net.mode != "overlay":
            files[f"networks/{name}.xml"] = network_xml(spec, name, macs)
    files.update(render_interfaces(spec, macs))
    if spec.firewalls:
        from kvmnet.render.nwfilter import render_filters

        files.update(render_filters(spec))
    if spec.host.bridges or spec.host.bonds or spec.host.vlans:
        for rname, fn in RENDERERS.items():
            for path, text in fn(spec).items():
                files[f"host/{rname}/{path}"] = text
    files.update(render_routes(spec))
    files.update(render_firewall(spec))
    return files
