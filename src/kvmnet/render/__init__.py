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

from kvmnet.spec.derive import nic_macs
from kvmnet.spec.model import Spec


def render_all(spec: Spec) -> dict[str, str]:
    files: dict[str, str] = {}
    macs = nic_macs(spec)
    try:
        from kvmnet.render.network_xml import network_xml
    except ImportError:  # pragma: no cover - bootstrap
        network_xml = None
    if network_xml is not None:
        for name in spec.networks:
            if spec.networks[name].mode != "overlay":
                files[f"networks/{name}.xml"] = network_xml(spec, name)
    _ = macs
    return files
