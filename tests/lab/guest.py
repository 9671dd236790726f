"""Tiny QEMU guests for the lab: Debian's kernel + a busybox initramfs built at run time.

The guest (``<domain type='qemu'>``: TCG, KVM hangs here) boots with direct kernel
boot, loads the virtio modules, takes a DHCP lease on every ethN with ``udhcpc``,
serves ``/index.html`` = "KVMNET-GUEST <name>" with busybox ``httpd`` on port 80 and
stays alive. Two CGI scripts let tests drive the guest over HTTP (lab guests only):

    /cgi-bin/peer          answers the client's address as the guest sees it (REMOTE_ADDR)
    /cgi-bin/run?CMD       runs the URL-encoded shell command CMD in the guest and answers
                           its output, then a last line "KVMNET-RC <exit code>"
                           (see :func:`run_url`)
 The name comes from the kernel command line (``kvmnet.name=``), so one
cached initramfs serves every guest; ``kvmnet.vlans=100,200`` there makes it a trunk
guest (802.1Q modules loaded, eth0.100 and eth0.200 made and leased like an ethN).
It prints markers on its serial console
(ttyS0, a ``<serial type='file'>`` log):

    KVMNET-BOOT <name> <uptime>
    KVMNET-HTTPD <name> port 80
    KVMNET-LEASE <ip> <mac> <iface>       (from the udhcpc script, on bound/renew)
    KVMNET-NOLEASE <iface>                (no lease after the first tries)
    KVMNET-LEASE6 <ipv6> <iface>          (DHCPv6, see below)
    KVMNET-ERROR <what>

IPv6: the guest's kernel makes SLAAC addresses from router advertisements by itself
(no userland needed; read them from /proc/net/if_inet6). DHCPv6 needs ``udhcpc6``,
which Debian 12's busybox-static (1.35) is built without and Debian 13's (1.37) has:
with ``kvmnet.dhcp6=1`` on the kernel command line the guest runs ``udhcpc6`` on every
ethN when its busybox has it, sending its name in the Client FQDN option (RFC 4704,
what dnsmasq matches a DHCPv6 reservation's name against), and prints KVMNET-LEASE6;
:func:`dhcp6_busybox` finds a busybox that has it (build with ``busybox=``).

Files live under /var/tmp/kvmnet-lab/ (world-traversable, because qemu runs as
libvirt-qemu and libvirt relabels kernel, initrd and serial log for it): a copy of
the kernel, the initramfs keyed by kernel version + hash of its scripts and
modules, and serial logs in serial/.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import lzma
import os
import re
import shutil
import stat
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from lxml import etree

CACHE_DIR = Path("/var/tmp/kvmnet-lab")
BUSYBOX = Path("/bin/busybox")
# the Debian 13 lab's root (tests/lab/trixie.py) on this machine: its static busybox 1.37
TRIXIE_BUSYBOX = Path("/var/cache/kvmnet/trixie/root/bin/busybox")
# LAB.md: load order matters
VIRTIO_MODULES = (
    "virtio_ring",
    "virtio",
    "virtio_pci_legacy_dev",
    "virtio_pci_modern_dev",
    "virtio_pci",
    "failover",
    "net_failover",
    "virtio_net",
)
# 802.1Q, loaded only by a trunk guest (kvmnet.vlans= on its kernel command line)
VLAN_MODULES = ("llc", "stp", "garp", "mrp", "8021q")

INIT_SCRIPT = r"""#!/bin/sh
# kvmnet lab guest: PID 1 from a busybox initramfs
/bin/busybox --install -s
export PATH=/sbin:/bin:/usr/sbin:/usr/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
exec </dev/console >/dev/console 2>&1
NAME=guest
VLANS=
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    kvmnet.name=*) NAME="${arg#kvmnet.name=}" ;;
    kvmnet.vlans=*) VLANS="${arg#kvmnet.vlans=}" ;;
  esac
done
hostname "$NAME"
echo "KVMNET-BOOT $NAME $(cut -d' ' -f1 /proc/uptime)"
for m in @MODULES@; do
  insmod "/lib/modules/$m.ko" || echo "KVMNET-ERROR insmod $m"
done
ip link set lo up
echo "KVMNET-GUEST $NAME" > /www/index.html
httpd -p 80 -h /www && echo "KVMNET-HTTPD $NAME port 80"
n=0
while [ ! -e /sys/class/net/eth0 ] && [ $n -lt 50 ]; do sleep 0.1; n=$((n+1)); done
# a trunk: eth0.V for each V of kvmnet.vlans=V,W (tagged), each leased below like ethN
if [ -n "$VLANS" ]; then
  for m in @VLAN_MODULES@; do
    insmod "/lib/modules/$m.ko" || echo "KVMNET-ERROR insmod $m"
  done
  for v in $(echo "$VLANS" | tr , ' '); do
    ip link add link eth0 name "eth0.$v" type vlan id "$v" || echo "KVMNET-ERROR vlan $v"
  done
fi
for dev in /sys/class/net/eth*; do
  [ -e "$dev" ] || { echo "KVMNET-ERROR no ethN"; break; }
  ifc="${dev##*/}"
  ip link set "$ifc" up
  udhcpc -i "$ifc" -s /etc/udhcpc.script -x "hostname:$NAME" -t 10 -T 1 -A 2 -b \
    || echo "KVMNET-NOLEASE $ifc"
done
if grep -q 'kvmnet.dhcp6=1' /proc/cmdline; then
  if command -v udhcpc6 >/dev/null; then
    # Client FQDN (option 39): flags 0, then NAME as one DNS label and the root label
    fqdn="00$(printf %02x ${#NAME})$(printf %s "$NAME" | od -An -tx1 | tr -d ' \n')00"
    for dev in /sys/class/net/eth*; do
      # udhcpc6 exits at once while the link-local address is still in DAD: try again
      n=0
      until udhcpc6 -i "${dev##*/}" -s /etc/udhcpc6.script -x "0x27:$fqdn" -t 10 -T 1 \
          -A 2 -b; do
        n=$((n+1)); [ $n -ge 60 ] && { echo "KVMNET-NOLEASE6 ${dev##*/}"; break; }
        sleep 0.5
      done
    done
  else
    echo "KVMNET-ERROR no udhcpc6 in this busybox"
  fi
fi
echo "KVMNET-UP $NAME $(cut -d' ' -f1 /proc/uptime)"
while :; do sleep 3600; done
"""

UDHCPC6_SCRIPT = r"""#!/bin/sh
# udhcpc6 hook: add the leased address ($ipv6 on $interface, a /128) and report it
case "$1" in
  bound|renew|updated|rebind)
    [ -n "$ipv6" ] && ip -6 addr replace "$ipv6/128" dev "$interface" \
      && echo "KVMNET-LEASE6 $ipv6 $interface" > /dev/console
    ;;
  leasefail|nak)
    echo "KVMNET-NOLEASE6 $interface $1" > /dev/console
    ;;
esac
exit 0
"""

CGI_PEER = r"""#!/bin/sh
# the client's address as this guest sees it
printf 'Content-Type: text/plain\r\n\r\n'
echo "$REMOTE_ADDR"
"""

CGI_RUN = r"""#!/bin/sh
# run the URL-encoded shell command in QUERY_STRING; answer its output and exit code
cmd="$(httpd -d "$QUERY_STRING")"
printf 'Content-Type: text/plain\r\n\r\n'
sh -c "$cmd" 2>&1 </dev/null
echo "KVMNET-RC $?"
"""

UDHCPC_SCRIPT = r"""#!/bin/sh
# udhcpc hook: apply the lease ($ip $mask/$subnet $router on $interface) and report it
case "$1" in
  deconfig)
    ip addr flush dev "$interface"
    ip link set "$interface" up
    ;;
  bound|renew)
    [ -n "$mask" ] || eval "$(ipcalc -p "$ip" "$subnet")" && mask="${mask:-$PREFIX}"
    ip addr flush dev "$interface"
    ip addr add "$ip/$mask" dev "$interface"
    if [ -n "$router" ] && ! ip route | grep -q '^default'; then
      for r in $router; do ip route add default via "$r" dev "$interface"; break; done
    fi
    mac="$(cat /sys/class/net/$interface/address)"
    echo "KVMNET-LEASE $ip $mac $interface" > /dev/console
    ;;
  leasefail|nak)
    echo "KVMNET-NOLEASE $interface $1" > /dev/console
    ;;
esac
exit 0
"""


# ------------------------------------------------------------------ kernel


def find_kernel() -> tuple[str, Path]:
    """(version, /boot/vmlinuz-VERSION) of the newest kernel that has modules installed."""
    found = []
    for vmlinuz in Path("/boot").glob("vmlinuz-*"):
        ver = vmlinuz.name.removeprefix("vmlinuz-")
        if (Path("/usr/lib/modules") / ver / "kernel").is_dir():
            found.append((vmlinuz.stat().st_mtime, ver, vmlinuz))
    if not found:
        raise FileNotFoundError(
            "no /boot/vmlinuz-* with /usr/lib/modules/<ver>/kernel (install linux-image-amd64)"
        )
    _, ver, path = max(found)
    return ver, path


def module_payloads(version: str, names: Iterable[str] = VIRTIO_MODULES) -> dict[str, bytes]:
    """Uncompressed .ko bytes by module name, in load order; built-in ones are left out.

    Debian 12 ships plain .ko; .ko.xz/.ko.gz are decompressed here (busybox insmod
    cannot), .ko.zst is refused (no zstd in the standard library).
    """
    root = Path("/usr/lib/modules") / version
    builtin_file = root / "modules.builtin"
    builtin = set()
    if builtin_file.exists():
        builtin = {Path(line).name.split(".ko")[0] for line in builtin_file.read_text().split()}
    files: dict[str, Path] = {}
    for path in (root / "kernel").rglob("*.ko*"):
        files.setdefault(path.name.split(".ko")[0], path)
    out: dict[str, bytes] = {}
    for name in names:
        alt = name.replace("_", "-")
        path = files.get(name) or files.get(alt)
        if path is None:
            if name in builtin or alt in builtin:
                continue
            raise FileNotFoundError(f"kernel module {name} not found under {root}/kernel")
        data = path.read_bytes()
        if path.name.endswith(".ko.xz"):
            data = lzma.decompress(data)
        elif path.name.endswith(".ko.gz"):
            data = gzip.decompress(data)
        elif not path.name.endswith(".ko"):
            raise ValueError(f"cannot decompress {path} for busybox insmod")
        out[name] = data
    return out


# ------------------------------------------------------------------ cpio (newc)


class CpioWriter:
    """Minimal cpio "newc" archive writer (what the kernel unpacks as initramfs)."""

    def __init__(self) -> None:
        self.buf = io.BytesIO()
        self.ino = 300000

    def _entry(self, name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0)):
        self.ino += 1
        nameb = name.encode() + b"\0"
        fields = [
            self.ino, mode, 0, 0, 2 if stat.S_ISDIR(mode) else 1, 0, len(data),
            0, 0, rdev[0], rdev[1], len(nameb), 0,
        ]  # fmt: skip
        hdr = b"070701" + b"".join(b"%08X" % f for f in fields)
        self.buf.write(hdr + nameb)
        self.buf.write(b"\0" * (-(len(hdr) + len(nameb)) % 4))
        self.buf.write(data)
        self.buf.write(b"\0" * (-len(data) % 4))

    def dir(self, name: str, perm: int = 0o755) -> None:
        self._entry(name, stat.S_IFDIR | perm)

    def file(self, name: str, data: bytes, perm: int = 0o644) -> None:
        self._entry(name, stat.S_IFREG | perm, data)

    def symlink(self, name: str, target: str) -> None:
        self._entry(name, stat.S_IFLNK | 0o777, target.encode())

    def chardev(self, name: str, major: int, minor: int, perm: int = 0o600) -> None:
        self._entry(name, stat.S_IFCHR | perm, rdev=(major, minor))

    def finish(self) -> bytes:
        self._entry("TRAILER!!!", 0)
        data = self.buf.getvalue()
        return data + b"\0" * (-len(data) % 512)


def init_script(modules: Iterable[str]) -> str:
    modules = list(modules)
    return INIT_SCRIPT.replace(
        "@MODULES@", " ".join(m for m in modules if m not in VLAN_MODULES)).replace(
        "@VLAN_MODULES@", " ".join(m for m in modules if m in VLAN_MODULES))


def has_applet(busybox: Path, applet: str) -> bool:
    import subprocess

    try:
        out = subprocess.run([str(busybox), "--list"], capture_output=True, text=True,
                             timeout=10).stdout
    except OSError:
        return False
    return applet in out.split()


def dhcp6_busybox() -> Path | None:
    """A static busybox with udhcpc6: the machine's own, else the Debian 13 lab's."""
    for path in (BUSYBOX, TRIXIE_BUSYBOX):
        if path.is_file() and has_applet(path, "udhcpc6"):
            return path
    return None


def build_initramfs(version: str, cache_dir: Path = CACHE_DIR,
                    busybox_path: Path = BUSYBOX) -> Path:
    """The gzip'd cpio for kernel VERSION, built once and cached by content hash."""
    mods = module_payloads(version, VIRTIO_MODULES + VLAN_MODULES)
    init = init_script(mods)
    busybox = busybox_path.read_bytes()
    h = hashlib.sha256()
    for part in (init.encode(), UDHCPC_SCRIPT.encode(), UDHCPC6_SCRIPT.encode(),
                 CGI_PEER.encode(), CGI_RUN.encode(), busybox, *mods.values()):
        h.update(hashlib.sha256(part).digest())
    out = cache_dir / f"initramfs-{version}-{h.hexdigest()[:16]}.cpio.gz"
    if out.exists():
        return out
    cw = CpioWriter()
    for d in ("bin", "sbin", "usr", "usr/bin", "usr/sbin", "dev", "proc", "sys", "tmp",
              "run", "etc", "www", "www/cgi-bin", "lib", "lib/modules", "var",
              "root"):  # fmt: skip
        cw.dir(d)
    cw.chardev("dev/console", 5, 1)
    cw.chardev("dev/null", 1, 3, 0o666)
    cw.file("bin/busybox", busybox, 0o755)
    cw.symlink("bin/sh", "busybox")
    cw.file("init", init.encode(), 0o755)
    cw.file("etc/udhcpc.script", UDHCPC_SCRIPT.encode(), 0o755)
    cw.file("etc/udhcpc6.script", UDHCPC6_SCRIPT.encode(), 0o755)
    cw.file("www/cgi-bin/peer", CGI_PEER.encode(), 0o755)
    cw.file("www/cgi-bin/run", CGI_RUN.encode(), 0o755)
    for name, data in mods.items():
        cw.file(f"lib/modules/{name}.ko", data)
    _ensure_dir(cache_dir)
    tmp = out.with_suffix(f".tmp{os.getpid()}")
    tmp.write_bytes(gzip.compress(cw.finish(), compresslevel=6, mtime=0))
    os.chmod(tmp, 0o644)
    tmp.replace(out)
    return out


def kernel_copy(vmlinuz: Path, cache_dir: Path = CACHE_DIR) -> Path:
    """A copy of the kernel in the cache, so libvirt's relabelling never touches /boot."""
    _ensure_dir(cache_dir)
    out = cache_dir / vmlinuz.name
    st = vmlinuz.stat()
    if not out.exists() or out.stat().st_size != st.st_size:
        tmp = out.with_suffix(f".tmp{os.getpid()}")
        shutil.copyfile(vmlinuz, tmp)
        os.chmod(tmp, 0o644)
        tmp.replace(out)
    return out


def guest_files(cache_dir: Path = CACHE_DIR, busybox: Path = BUSYBOX) -> tuple[Path, Path]:
    """(kernel, initrd) ready for domain_xml; `busybox`: the one the initramfs holds."""
    version, vmlinuz = find_kernel()
    return kernel_copy(vmlinuz, cache_dir), build_initramfs(version, cache_dir, busybox)


def serial_log_path(name: str, cache_dir: Path = CACHE_DIR) -> Path:
    """A fresh (removed if present) serial log path for guest NAME."""
    d = cache_dir / "serial"
    _ensure_dir(d)
    p = d / f"{name}.log"
    p.unlink(missing_ok=True)
    return p


def _ensure_dir(d: Path) -> None:
    d.mkdir(parents=True, exist_ok=True)
    os.chmod(d, 0o755)


# ------------------------------------------------------------------ domain


def domain_xml(
    name: str,
    kernel: str | os.PathLike[str],
    initrd: str | os.PathLike[str],
    nics: list[dict[str, str]],
    serial_log_path: str | os.PathLike[str],
    *,
    memory_mib: int = 192,
    extra_cmdline: str = "",
) -> str:
    """<domain type='qemu'> with direct kernel boot and a serial console to a file.

    NICS: dicts with "network" (a libvirt network name; or "bridge" for a host
    bridge), optional "mac" and "model" (default virtio).
    """
    if not 128 <= memory_mib <= 256:
        raise ValueError("lab guests use 128-256 MiB")
    dom = etree.Element("domain", type="qemu")
    etree.SubElement(dom, "name").text = name
    etree.SubElement(dom, "memory", unit="MiB").text = str(memory_mib)
    etree.SubElement(dom, "vcpu").text = "1"
    os_el = etree.SubElement(dom, "os")
    etree.SubElement(os_el, "type", arch="x86_64", machine="pc").text = "hvm"
    etree.SubElement(os_el, "kernel").text = str(kernel)
    etree.SubElement(os_el, "initrd").text = str(initrd)
    cmdline = f"console=ttyS0 panic=-1 loglevel=4 kvmnet.name={name} {extra_cmdline}"
    etree.SubElement(os_el, "cmdline").text = cmdline.strip()
    etree.SubElement(etree.SubElement(dom, "features"), "acpi")
    etree.SubElement(dom, "clock", offset="utc")
    for event, action in (("poweroff", "destroy"), ("reboot", "destroy"), ("crash", "destroy")):
        etree.SubElement(dom, f"on_{event}").text = action
    dev = etree.SubElement(dom, "devices")
    for nic in nics:
        if "bridge" in nic:
            iface = etree.SubElement(dev, "interface", type="bridge")
            etree.SubElement(iface, "source", bridge=nic["bridge"])
        else:
            iface = etree.SubElement(dev, "interface", type="network")
            etree.SubElement(iface, "source", network=nic["network"])
        if nic.get("mac"):
            etree.SubElement(iface, "mac", address=nic["mac"])
        etree.SubElement(iface, "model", type=nic.get("model", "virtio"))
    serial = etree.SubElement(dev, "serial", type="file")
    etree.SubElement(serial, "source", path=str(serial_log_path))
    etree.SubElement(serial, "target", port="0")
    etree.SubElement(dev, "controller", type="usb", model="none")
    etree.SubElement(dev, "memballoon", model="none")
    return etree.tostring(dom, encoding="unicode")


def start_guest(
    conn: Any, name: str, nics: list[dict[str, str]], busybox: Path = BUSYBOX, **kwargs: Any
) -> tuple[Any, Path]:
    """Build the files, start a *transient* domain NAME; (virDomain, serial log path).

    Transient: destroying it (or the lv_conn fixture) removes it completely.
    """
    kernel, initrd = guest_files(busybox=busybox)
    log = serial_log_path(name)
    dom = conn.createXML(domain_xml(name, kernel, initrd, nics, log, **kwargs), 0)
    return dom, log


def run_url(ip: str, command: str) -> str:
    """URL that makes the guest at IP run the shell COMMAND (its /cgi-bin/run)."""
    return f"http://{ip}/cgi-bin/run?{quote(command, safe='')}"


def wait_for_serial(
    path: str | os.PathLike[str],
    regex: str | re.Pattern[str],
    timeout: float = 60.0,
    *,
    alive: Callable[[], bool] | None = None,
    poll: float = 0.2,
) -> re.Match[str]:
    """Poll the serial log PATH until REGEX matches; the match, or TimeoutError.

    ALIVE (e.g. ``dom.isActive``) is checked too, so a guest that died fails fast.
    """
    pattern = re.compile(regex) if isinstance(regex, str) else regex
    deadline = time.monotonic() + timeout
    text = ""
    while True:
        try:
            text = Path(path).read_text(errors="replace")
        except FileNotFoundError:
            text = ""
        m = pattern.search(text)
        if m:
            return m
        gone = alive is not None and not alive()
        if gone or time.monotonic() > deadline:
            tail = "\n".join(text.splitlines()[-30:])
            why = "guest stopped" if gone else f"not seen within {timeout:.0f}s"
            raise TimeoutError(f"{pattern.pattern!r} {why} in {path}; tail:\n{tail}")
        time.sleep(poll)
