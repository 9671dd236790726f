"""render: pure Spec -> artefacts. `render_all` returns {relative path: text}.

Layout of `kvmnet render FILE -o DIR` (documented in the README):
  networks/NAME.xml                        libvirt network XML (virsh net-define)
  guests/GUEST/nicN.xml                    <interface> XML per guest NIC
  host/ifupdown/etc/network/interfaces.d/  host bridge config, one tree per renderer
  host/netplan/etc/netplan/
  host/networkmanager/etc/NetworkManager/system-connections/
  host/networkd/etc/systemd/network/
  routes/NETWORK.txt                       the route the upstream router needs
"""

from __future__ import annotations

from kvmnet.render.hostconf import RENDERERS
from kvmnet.render.interface_xml import render_interfaces
from kvmnet.render.network_xml import network_xml
from kvmnet.render.routes import render_routes
from kvmnet.spec.model import Spec


def render_all(spec: Spec) -> dict[str, str]:
    files: dict[str, str] = {}
    for name, net in spec.networks.items():
        if net.mode != "overlay":
            files[f"networks/{name}.xml"] = network_xml(spec, name)
    files.update(render_interfaces(spec))
    if spec.host.bridges:
        for rname, fn in RENDERERS.items():
            for path, text in fn(spec).items():
                files[f"host/{rname}/{path}"] = text
    files.update(render_routes(spec))
    return files
