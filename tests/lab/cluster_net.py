"""The cluster lab's wiring (tests/lab/cluster.py): the underlay, OVN central, the
"internet" namespace, ssh keys and sshds, and each hypervisor's Open vSwitch + OVN.

Quirks (Debian 12: OpenSSH 9.2, OVS 3.1, OVN 23.03, libvirt 9.0):
- The kernel has no openvswitch module: every OVS runs the userspace datapath
  (datapath_type=netdev). Its tunnels route by OVS's own table, so the underlay NIC is
  a port of ``br-phy`` and the hypervisor's underlay address sits on br-phy (also the
  address its sshd listens on); ``ovs/route/add`` tells OVS where the underlay is.
- libvirt plugs an overlay NIC by running ``ovs-vsctl`` (default socket
  /run/openvswitch/db.sock): the hypervisor's private /run/openvswitch is what makes it
  reach that hypervisor's OVS.
- sshd wants its privilege-separation folder /run/sshd; it is made on the machine
  (empty, harmless) since /run itself is shared.
"""

from __future__ import annotations

import errno
import os
import socket
import subprocess
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING

from pyroute2 import IPRoute
from pyroute2 import netns as pr_netns
from pyroute2.ethtool import Ethtool
from pyroute2.netlink.exceptions import NetlinkError

from lab.cluster_proc import NETNS_DIR, run, stop_pidfile, wait_for

if TYPE_CHECKING:
    from lab.cluster import Cluster, Hv

from lab import cluster as C  # noqa: N812 - constants only (import cycle: late use)


def _ns(name: str) -> None:
    run(["ip", "netns", "add", name])
    run(["ip", "-n", name, "link", "set", "lo", "up"])


def underlay(hvs: list[Hv]) -> None:
    """Bridge kvtc-ul (the admin side's underlay address) and a veth into each
    namespace, named ul0 there."""
    run(["ip", "link", "add", C.UNDERLAY_BR, "type", "bridge"])
    run(["ip", "addr", "add", f"{C.ADMIN_ADDR}/24", "dev", C.UNDERLAY_BR])
    run(["ip", "link", "set", C.UNDERLAY_BR, "up"])
    ends = [(hv.netns, hv.link) for hv in hvs]
    ends += [(f"{C.PREFIX}central", "kvtc-ctr"), (f"{C.PREFIX}inet", "kvtc-inet")]
    for ns, link in ends:
        _ns(ns)
        run(["ip", "link", "add", link, "type", "veth", "peer", "name", "ul0", "netns", ns])
        run(["ip", "link", "set", link, "master", C.UNDERLAY_BR, "up"])
        tx_offload_off(link)
        tx_offload_off("ul0", ns)


def tx_offload_off(ifname: str, netns: str | None = None) -> None:
    """No TX checksum offload on IFNAME: a veth end hands its peer packets whose TCP
    checksum is left to "hardware"; the kernel never fills it in for OVS's userspace
    datapath, which reads the peer with a raw socket, so TCP (ssh, ovsdb) across br-phy
    is dropped while ping works."""
    if netns:
        pr_netns.pushns(netns)
    try:
        with closing(Ethtool()) as e:
            f = e.get_features(ifname)
            for k in ("tx-checksum-ip-generic", "tx-checksum-ipv4", "tx-checksum-ipv6",
                      "tx-tcp-segmentation", "tx-generic-segmentation"):
                if k in f.features and f.features[k].available:
                    f.features[k].enable = False
            e.set_features(ifname, f)
    finally:
        if netns:
            pr_netns.popns()


def set_underlay(hv: Hv, up: bool) -> None:
    """Plug or unplug HV's underlay cable (its veth on the admin side)."""
    run(["ip", "link", "set", hv.link, "up" if up else "down"])


# ---------------------------------------------------------------- OVN central

def central(cluster: Cluster) -> None:
    d = C.RUN / "central"
    d.mkdir(parents=True, exist_ok=True)
    run(["ip", "-n", f"{C.PREFIX}central", "addr", "add", f"{C.CENTRAL_ADDR}/24", "dev", "ul0"])
    run(["ip", "-n", f"{C.PREFIX}central", "link", "set", "ul0", "up"])
    for db, schema in (("nb", C.NB_SCHEMA), ("sb", C.SB_SCHEMA)):
        run(["ovsdb-tool", "create", str(d / f"{db}.db"), schema])
        start_db(db)
    cluster.nbctl("init")
    cluster.sbctl("init")
    start_northd()


def start_db(db: str) -> None:
    """The NB or SB ovsdb-server of central (its database file kept across restarts)."""
    d, port = C.RUN / "central", {"nb": 6641, "sb": 6642}[db]
    run(["ip", "netns", "exec", f"{C.PREFIX}central", "ovsdb-server", str(d / f"{db}.db"),
         f"--remote=punix:{d}/{db}.sock", f"--remote=ptcp:{port}:{C.CENTRAL_ADDR}",
         f"--pidfile={d}/{db}.pid", f"--unixctl={d}/{db}.ctl", f"--log-file={d}/{db}.log",
         "--detach", "--no-chdir"])
    wait_for(f"{db}.sock", (d / f"{db}.sock").exists, 10, [d / f"{db}.log"])


def stop_db(db: str) -> None:
    stop_pidfile(C.RUN / "central" / f"{db}.pid")


def start_northd() -> None:
    d = C.RUN / "central"
    run(["ip", "netns", "exec", f"{C.PREFIX}central", "ovn-northd",
         f"--ovnnb-db=unix:{d}/nb.sock", f"--ovnsb-db=unix:{d}/sb.sock",
         f"--pidfile={d}/northd.pid", f"--unixctl={d}/northd.ctl",
         f"--log-file={d}/northd.log", "--detach", "--no-chdir"])


def stop_northd() -> None:
    stop_pidfile(C.RUN / "central" / "northd.pid")


# ---------------------------------------------------------------- the internet

def inet() -> None:
    """kvt-cl-inet: 10.164.0.254 on the underlay, a busybox httpd answering the
    client's address at /cgi-bin/peer; no route to anything beyond its links."""
    ns, d = f"{C.PREFIX}inet", C.RUN / "inet"
    (d / "www/cgi-bin").mkdir(parents=True, exist_ok=True)
    (d / "www/cgi-bin/peer").write_text(C.CGI_PEER)
    os.chmod(d / "www/cgi-bin/peer", 0o755)
    run(["ip", "-n", ns, "addr", "add", f"{C.INET_ADDR}/24", "dev", "ul0"])
    run(["ip", "-n", ns, "link", "set", "ul0", "up"])
    proc = subprocess.Popen(["ip", "netns", "exec", ns, "busybox", "httpd", "-f", "-p", "80",
                             "-h", str(d / "www")], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    (d / "httpd.pid").write_text(f"{proc.pid}\n")
    wait_for("the internet's httpd", lambda: _listens(ns, 80), 10)


def _listens(ns: str, port: int) -> bool:
    res = run(["ip", "netns", "exec", ns, "ss", "-Hltn", f"sport = :{port}"], check=False)
    return bool(res.stdout.strip())


def gateway(hv: Hv) -> None:
    """The router's outside: inet's ext0 (EXT_INET) on HV's br-ex, mapped as PHYSNET."""
    ns = f"{C.PREFIX}inet"
    run(["ip", "link", "add", "ext0", "netns", ns, "type", "veth", "peer", "name", "kvtc-gw",
         "netns", hv.netns])
    run(["ip", "-n", ns, "addr", "add", f"{C.EXT_INET}/24", "dev", "ext0"])
    run(["ip", "-n", ns, "link", "set", "ext0", "up"])
    run(["ip", "-n", hv.netns, "link", "set", "kvtc-gw", "up"])
    hv.vsctl("add-br", "br-ex", "--", "set", "bridge", "br-ex", "datapath_type=netdev",
             "--", "add-port", "br-ex", "kvtc-gw")
    hv.vsctl("set", "open", ".", f"external_ids:ovn-bridge-mappings={C.PHYSNET}:br-ex")


# ---------------------------------------------------------------- ssh

def admin_keys(hvs: list[Hv]) -> None:
    """The admin's key, each sshd's host key, authorized_keys, the pinned known_hosts
    and the ssh client config for 10.164.0.*."""
    a = C.RUN / "admin"
    a.mkdir(parents=True, exist_ok=True)
    os.chmod(a, 0o700)
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "kvt-cl-admin",
         "-f", str(a / "id_ed25519")])
    (a / "authorized_keys").write_text((a / "id_ed25519.pub").read_text())
    os.chmod(a / "authorized_keys", 0o600)
    for hv in hvs:
        new_host_key(hv)
    pin_host_keys(hvs)
    C.SSH_CONF.write_text(
        "# kvmnet's cluster lab (tests/lab/cluster.py); removed when the lab stops\n"
        "Host 10.164.0.*\n"
        "    User root\n"
        f"    IdentityFile {a}/id_ed25519\n"
        "    IdentitiesOnly yes\n"
        f"    UserKnownHostsFile {a}/known_hosts\n"
        "    GlobalKnownHostsFile /dev/null\n"
        "    StrictHostKeyChecking yes\n"
        "    UpdateHostKeys no\n"
        "    BatchMode yes\n"
        f"    ConnectTimeout {C.CONNECT_TIMEOUT}\n"
        "    ServerAliveInterval 5\n"
        "    ServerAliveCountMax 2\n"
        "    GSSAPIAuthentication no\n")


def new_host_key(hv: Hv) -> None:
    d = hv.dir / "ssh"
    d.mkdir(parents=True, exist_ok=True)
    for f in d.glob("ssh_host_ed25519_key*"):
        f.unlink()
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", hv.name,
         "-f", str(d / "ssh_host_ed25519_key")])


def pin_host_keys(hvs: list[Hv]) -> None:
    """known_hosts from the host keys the lab made (never from the network)."""
    lines = []
    for hv in hvs:
        kind, key = (hv.dir / "ssh/ssh_host_ed25519_key.pub").read_text().split()[:2]
        lines.append(f"{hv.addr} {kind} {key}\n")
    (C.RUN / "admin/known_hosts").write_text("".join(lines))


def sshd(hv: Hv) -> None:
    """HV's sshd, listening on its underlay address only."""
    d = hv.dir / "ssh"
    (d / "sshd_config").write_text(
        f"ListenAddress {hv.addr}\n"
        f"HostKey {d}/ssh_host_ed25519_key\n"
        f"PidFile {d}/sshd.pid\n"
        f"AuthorizedKeysFile {C.RUN}/admin/authorized_keys\n"
        "PermitRootLogin prohibit-password\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nUsePAM no\nX11Forwarding no\n"
        "AllowTcpForwarding no\nPrintMotd no\nLogLevel VERBOSE\n")
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    hv.x(["/usr/sbin/sshd", "-f", str(d / "sshd_config"), "-E", str(d / "sshd.log")])
    wait_for(f"sshd of {hv.name}", lambda: _connects(hv.addr, 22), 10, [d / "sshd.log"])


def stop_sshd(hv: Hv) -> None:
    stop_pidfile(hv.dir / "ssh/sshd.pid")


def _connects(addr: str, port: int) -> bool:
    try:
        with socket.create_connection((addr, port), timeout=1):
            return True
    except OSError:
        return False


# ---------------------------------------------------------------- OVS + OVN per hv

def ovs(cluster: Cluster, hv: Hv) -> None:
    """ovsdb-server, ovs-vswitchd, br-phy (underlay), br-int, ovn-controller in HV."""
    r = "/run/openvswitch"
    run(["ovsdb-tool", "create", str(hv.dir / "run/openvswitch/conf.db"), C.VS_SCHEMA])
    hv.x(["ovsdb-server", f"{r}/conf.db", f"--remote=punix:{r}/db.sock",
          f"--pidfile={r}/ovsdb-server.pid", f"--unixctl={r}/ovsdb-server.ctl",
          f"--log-file={r}/ovsdb-server.log", "--detach", "--no-chdir"])
    hv.vsctl("--no-wait", "init")
    hv.x(["ovs-vswitchd", f"unix:{r}/db.sock", f"--pidfile={r}/ovs-vswitchd.pid",
          f"--unixctl={r}/ovs-vswitchd.ctl", f"--log-file={r}/ovs-vswitchd.log",
          "--detach", "--no-chdir"])
    hv.vsctl("add-br", "br-phy", "--", "set", "bridge", "br-phy", "datapath_type=netdev",
             "--", "add-port", "br-phy", "ul0")
    hv.x(["ip", "link", "set", "ul0", "up"])
    hv.x(["ip", "addr", "add", f"{hv.addr}/24", "dev", "br-phy"])
    hv.x(["ip", "link", "set", "br-phy", "up"])
    hv.x(["ovs-appctl", "-t", f"{r}/ovs-vswitchd.ctl", "ovs/route/add", "10.164.0.0/24",
          "br-phy"])
    hv.vsctl("add-br", "br-int", "--", "set", "bridge", "br-int", "datapath_type=netdev",
             "fail-mode=secure", "other-config:disable-in-band=true")
    hv.vsctl("set", "open", ".", f"external_ids:system-id={hv.chassis}",
             f"external_ids:ovn-remote={cluster.sb_remote}",
             "external_ids:ovn-encap-type=geneve", f"external_ids:ovn-encap-ip={hv.addr}",
             "external_ids:ovn-bridge-datapath-type=netdev")
    hv.x(["ovn-controller", f"unix:{r}/db.sock", "--pidfile=/run/ovn/ovn-controller.pid",
          "--log-file=/run/ovn/ovn-controller.log", "--detach", "--no-chdir"],
         env={"OVN_RUNDIR": "/run/ovn"})


# ---------------------------------------------------------------- teardown

def remove_links_and_namespaces() -> None:
    """The kvtc* links on the admin side (their peers go with them), then the kvt-cl-*
    namespaces (a link may vanish on its own meanwhile: ENODEV is fine)."""
    with IPRoute() as ipr:
        for name in ("kvtc-hv1", "kvtc-hv2", "kvtc-hv3", "kvtc-ctr", "kvtc-inet",
                     C.UNDERLAY_BR):
            for idx in ipr.link_lookup(ifname=name):
                try:
                    ipr.link("del", index=idx)
                except NetlinkError as e:
                    if e.code != errno.ENODEV:
                        raise
    for ns in sorted(os.listdir(NETNS_DIR)) if NETNS_DIR.is_dir() else []:
        if ns.startswith(C.PREFIX):
            run(["ip", "netns", "del", ns], check=False)
