"""A whole Linux kernel for tests that need what this machine's kernel lacks.

This machine's kernel is built without bonding, 802.1Q VLAN devices and VLAN filtering
on bridges (CONFIG_BONDING, CONFIG_VLAN_8021Q and CONFIG_BRIDGE_VLAN_FILTERING are not
set, and it has no modules). Debian's kernel (linux-image-amd64, installed by
scripts/setup for the lab guests) has all three. So a test that must see a real bond
boots that kernel in QEMU (TCG) and runs its commands there, as root, on this
machine's own files:

- the machine's root file system is shared read-only over 9p (virtio) and an overlay
  with a tmpfs on top makes it writable inside the VM only (nothing the VM writes
  reaches this machine);
- one folder, `out`, is shared read-write: the command's output comes back there;
- the initramfs (busybox, the modules below, an init that mounts all of that and
  chroots) is built once per kernel version and cached like tests/lab/guest.py's.

`run(script, out)` boots, runs `script` (a /bin/sh script) in the chroot with `out`
mounted at /kvmvm, waits for the VM to power itself off and returns the script's exit
code and output. The VM has no NIC: its networks are the namespaces and veths the
script makes inside it. It is slow (TCG: Python starts in seconds), so a test runs one
VM for many checks.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from lab.guest import (
    BUSYBOX,
    CACHE_DIR,
    VIRTIO_MODULES,
    CpioWriter,
    find_kernel,
    kernel_copy,
    module_payloads,
)

QEMU = "qemu-system-x86_64"
# load order: each after what it needs (modules.dep)
MODULES = (
    *VIRTIO_MODULES,
    "netfs", "fscache", "9pnet", "9pnet_virtio", "9p", "overlay",
    "llc", "stp", "garp", "mrp", "8021q", "bridge", "tls", "bonding", "veth", "tun",
    "inet_diag", "tcp_diag", "udp_diag", "af_packet",
)

# not a module of its own in every kernel: fscache went into netfs in Linux 6.4 (the
# Debian 13 root's 6.12, where tests/integration/test_vlans_libvirt_kernelvm.py runs too)
OPTIONAL = frozenset({"fscache"})

INIT = r"""#!/bin/sh
/bin/busybox --install -s
export PATH=/sbin:/bin:/usr/sbin:/usr/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
exec </dev/console >/dev/console 2>&1
for m in @MODULES@; do
  [ -f "/lib/modules/$m.ko" ] && { insmod "/lib/modules/$m.ko" || echo "KVMVM-ERROR insmod $m"; }
done
mkdir -p /ro /rw /root
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=512000,cache=loose hostroot /ro \
  || echo "KVMVM-ERROR 9p root"
mount -t tmpfs -o size=1g tmpfs /rw
mkdir -p /rw/upper /rw/work
mount -t overlay overlay -o lowerdir=/ro,upperdir=/rw/upper,workdir=/rw/work /root \
  || echo "KVMVM-ERROR overlay"
mount -t proc proc /root/proc
mount -t sysfs sysfs /root/sys
mount -o bind /dev /root/dev
mount -t tmpfs tmpfs /root/run
mount -t tmpfs tmpfs /root/tmp
mkdir -p /root/run/lock /root/kvmvm
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 out /root/kvmvm \
  || echo "KVMVM-ERROR 9p out"
ip link set lo up
echo "KVMVM-UP $(cut -d' ' -f1 /proc/uptime)"
chroot /root /bin/sh -c \
  'cd /kvmvm && /bin/sh /kvmvm/script.sh > /kvmvm/output.txt 2>&1; echo $? > /kvmvm/rc'
echo "KVMVM-DONE $(cat /root/kvmvm/rc)"
sync
poweroff -f
"""


@dataclass(frozen=True)
class Result:
    rc: int
    output: str
    console: str
    seconds: float


def available() -> str | None:
    """Why no kernel VM can run here (None: it can)."""
    if os.geteuid() != 0:
        return "the kernel VM shares / and needs root"
    if shutil.which(QEMU) is None:
        return f"{QEMU} is not installed (./scripts/setup installs qemu-system-x86)"
    try:
        find_kernel()
    except (FileNotFoundError, RuntimeError) as e:
        return str(e)
    return None


def initramfs(cache_dir: Path = CACHE_DIR) -> tuple[Path, Path]:
    """(kernel, initramfs) for the VM, built once and cached by content."""
    version, vmlinuz = find_kernel()
    tree = Path("/usr/lib/modules") / version / "kernel"
    mods = module_payloads(version, [m for m in MODULES if m not in OPTIONAL
                                     or next(tree.rglob(f"{m}.ko*"), None) is not None])
    init = INIT.replace("@MODULES@", " ".join(mods))
    h = hashlib.sha256(init.encode())
    for name, data in mods.items():
        h.update(name.encode() + hashlib.sha256(data).digest())
    cache_dir.mkdir(parents=True, exist_ok=True)
    out = cache_dir / f"kvmvm-{version}-{h.hexdigest()[:16]}.cpio.gz"
    if not out.exists():
        cw = CpioWriter()
        for d in ("bin", "sbin", "usr", "usr/bin", "usr/sbin", "proc", "sys", "dev", "lib",
                  "lib/modules", "tmp", "run"):
            cw.dir(d)
        cw.chardev("dev/console", 5, 1)
        cw.chardev("dev/null", 1, 3)
        cw.file("bin/busybox", BUSYBOX.read_bytes(), 0o755)
        cw.symlink("bin/sh", "busybox")
        cw.file("init", init.encode(), 0o755)
        for name, data in mods.items():
            cw.file(f"lib/modules/{name}.ko", data)
        tmp = out.with_suffix(f".tmp{os.getpid()}")
        tmp.write_bytes(gzip.compress(cw.finish(), 6))
        tmp.replace(out)
    return kernel_copy(vmlinuz, cache_dir), out


def run(script: str, out: Path, within: float = 900, memory_mb: int = 2048) -> Result:
    """Boot the kernel VM, run `script` (sh) as root in its chroot of this machine's
    files with `out` at /kvmvm (and as its working folder); the exit code and output."""
    kernel, initrd = initramfs()
    out.mkdir(parents=True, exist_ok=True)
    (out / "script.sh").write_text(script)
    for stale in ("output.txt", "rc"):
        (out / stale).unlink(missing_ok=True)
    cmd = [QEMU, "-accel", "tcg", "-m", str(memory_mb), "-smp", "2", "-nographic",
           "-no-reboot", "-nic", "none", "-kernel", str(kernel), "-initrd", str(initrd),
           "-append", "console=ttyS0 quiet panic=-1",
           "-fsdev", "local,id=r,path=/,security_model=passthrough,readonly=on,"
           "multidevs=remap",
           "-device", "virtio-9p-pci,fsdev=r,mount_tag=hostroot",
           "-fsdev", f"local,id=o,path={out},security_model=passthrough",
           "-device", "virtio-9p-pci,fsdev=o,mount_tag=out"]
    t0 = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, errors="replace",
                          timeout=within, check=False, stdin=subprocess.DEVNULL)
    seconds = time.monotonic() - t0
    console = proc.stdout + proc.stderr
    rc_file = out / "rc"
    if not rc_file.exists():
        raise AssertionError(f"the kernel VM did not run the script (qemu exit "
                             f"{proc.returncode}); console:\n{console[-4000:]}")
    output = (out / "output.txt").read_text(errors="replace")
    return Result(int(rc_file.read_text().strip() or 1), output, console, seconds)
