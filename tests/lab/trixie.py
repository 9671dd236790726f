"""The Debian 13 lab: a debootstrap root of Debian trixie (libvirt 11.3, Python 3.13) in
which the suite's own lab tests run against libvirt 11 (issue 18, item 2).

    python tests/lab/trixie.py setup                 # make or refresh the root (cached)
    python tests/lab/trixie.py pytest [ARGS...]      # run pytest in it, on this checkout
    python tests/lab/trixie.py run CMD [ARGS...]     # any command in it
    python tests/lab/trixie.py --firewall nftables pytest ...   # libvirt's nftables backend

The root lives in /var/cache/kvmnet/trixie/root ($KVMNET_TRIXIE_ROOT). Set-up is
idempotent: each step leaves a stamp in ROOT/.kvmnet/ and runs again only when its
input changed (the package list, pyproject.toml):
  1. debootstrap --variant=minbase trixie from deb.debian.org (about 1.5 min here);
  2. the root's group kvm gets the host's gid *before* packages install: their scripts
     chgrp /dev/kvm to the root's kvm gid, and the host's /dev is bound in at run time
     (with another gid the host's own libvirtd then hangs probing QEMU);
  3. PACKAGES with apt-get, only /proc mounted (no /dev) while they install;
  4. the host's CA bundle and pip config copied in after them (ca-certificates rewrites
     the bundle), or pip inside cannot reach the registry here;
  5. qemu.conf `stdio_handler = "file"`: virtlogd 11.3 in the root cannot read its
     peer's start time here and drops QEMU's connection at guest start;
  6. a Python 3.13 venv /opt/kvmnet-venv with the system site packages (Debian's
     python3-libvirt 11.3: the README's compiler-free install) and this checkout
     installed editable with its test extra, from /kvmnet.

Each run is its own mount namespace (unshare -m): ROOT bound on itself (`ip netns exec`
needs / to be a mount point), proc, sysfs, the host's /dev, a fresh tmpfs on /run (the
root's own: its libvirtd socket, pid files and network namespaces are not the host's,
so the host lab's `kvmnet-lab` and this one never meet), this checkout on /kvmnet. When
the last process of the run exits, every mount goes with it; the lab fixture stops the
libvirtd it started in there (tests/lab/libvirtd.py) as on the host. Set-ups and runs
take turns (a flock beside the root): they share the root's /etc/libvirt and /var/lib.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(os.environ.get("KVMNET_TRIXIE_ROOT", "/var/cache/kvmnet/trixie/root"))
CHECKOUT = Path(__file__).resolve().parents[2]
MIRROR = "http://deb.debian.org/debian"
VENV = "/opt/kvmnet-venv"
PACKAGES = (
    "libvirt-daemon", "libvirt-daemon-driver-qemu", "libvirt-daemon-driver-network",
    # guest firewalls: the nwfilter driver and libvirt's own filters (clean-traffic)
    "libvirt-daemon-driver-nwfilter", "libvirt-daemon-config-nwfilter",
    "libvirt-clients", "dnsmasq-base", "nftables", "iptables", "iproute2", "procps",
    "qemu-system-x86", "busybox-static", "cpio", "linux-image-amd64",
    "python3", "python3-venv", "python3-libvirt", "patch", "xz-utils", "wget",
    "openvswitch-switch", "ovn-central", "ovn-host",   # the OVN and multi-host tests
    "libnss-libvirt",                                 # guests' names on the host (test_7_dns)
)
PATH = "PATH=/usr/sbin:/usr/bin:/sbin:/bin"
# The mounts of one run, then the command chrooted; argument list only (sh -c with
# positional parameters: nothing is interpolated into the script).
MOUNTS = r"""
set -e
R=$1; SRC=$2; FULL=$3; FW=$4; shift 4
mount --bind "$R" "$R"
mount -t proc proc "$R/proc"
mount --bind "$SRC" "$R/kvmnet"
if [ "$FULL" = full ]; then
  mount -t sysfs sysfs "$R/sys"
  mount --rbind /dev "$R/dev"
  mount -t tmpfs -o mode=0755 tmpfs "$R/run"
fi
if [ "$FW" = nftables ]; then
  mount --bind "$R/.kvmnet/network-nftables.conf" "$R/etc/libvirt/network.conf"
fi
exec chroot "$R" "$@"
"""
# libvirt 11's nftables backend runs `tc ... action csum` (the DHCP checksum fix) on every
# NAT network; this machine's kernel lacks act_csum, so starting one fails. With
# --firewall nftables, libvirtd finds this `tc` first on its PATH: it skips only those
# commands and runs the real tc for every other.
TC_WRAPPER = """#!/bin/sh
# kvmnet's Debian 13 lab (tests/lab/trixie.py): skip only `tc ... action csum`, which
# needs act_csum, a module this machine's kernel lacks.
case " $* " in *" action csum "*) exit 0 ;; esac
exec /usr/sbin/tc "$@"
"""
WRAPPERS = "/usr/local/lib/kvmnet-lab"
FIREWALLS = ("iptables", "nftables")


class TrixieError(Exception):
    pass


def _stamp(name: str) -> Path:
    return ROOT / ".kvmnet" / name


def _done(name: str, key: str = "") -> bool:
    p = _stamp(name)
    return p.is_file() and p.read_text() == key


def _mark(name: str, key: str = "") -> None:
    _stamp(name).parent.mkdir(parents=True, exist_ok=True)
    _stamp(name).write_text(key)


def _check(r: subprocess.CompletedProcess[str], what: str) -> None:
    if r.returncode != 0:
        tail = "\n".join((r.stdout + r.stderr).splitlines()[-25:])
        raise TrixieError(f"{what} failed (exit {r.returncode}):\n{tail}")


def in_root(args: list[str], *, full: bool = True, firewall: str = "iptables",
            cwd: str = "/kvmnet", capture: bool = True,
            timeout: float | None = None) -> subprocess.CompletedProcess[str]:
    """Run ARGS chrooted in the root, in a mount namespace of its own (see the module
    docstring); `full` adds sysfs, the host's /dev and a fresh /run (a run of tests),
    without it only /proc and the checkout are there (package and pip installs).
    `firewall`: libvirt's backend for this run, "iptables" (what Debian 13's libvirt
    picks when iptables is installed) or "nftables" (network.conf says so for the run,
    with the tc wrapper above)."""
    path = PATH.replace("=", f"={WRAPPERS}:", 1) if firewall == "nftables" else PATH
    envs = [path, "HOME=/root", "LANG=C.UTF-8", "PYTHONDONTWRITEBYTECODE=1"]
    cmd = ["unshare", "--mount", "--propagation", "private", "sh", "-c", MOUNTS, "sh",
           str(ROOT), str(CHECKOUT), "full" if full else "setup", firewall,
           "/usr/bin/env", "-i", "-C", cwd, *envs, *args]
    return subprocess.run(cmd, capture_output=capture, text=True, timeout=timeout,
                          check=False)


def _processes_in_root() -> list[int]:
    """Pids whose root is ROOT (a run's daemons still alive)."""
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if os.readlink(d / "root") == str(ROOT):
                    out.append(int(d.name))
            except OSError:
                continue
    return out


def _debootstrap() -> None:
    if _done("debootstrap"):
        return
    if ROOT.exists():  # an interrupted one: start again
        if _processes_in_root():
            raise TrixieError(f"{ROOT} is half made and processes run in it")
        shutil.rmtree(ROOT)
    ROOT.parent.mkdir(parents=True, exist_ok=True)
    print(f"trixie: debootstrap into {ROOT}", flush=True)
    r = subprocess.run(["debootstrap", "--variant=minbase", "trixie", str(ROOT), MIRROR],
                       capture_output=True, text=True, check=False)
    _check(r, "debootstrap")
    (ROOT / "kvmnet").mkdir(exist_ok=True)
    _mark("debootstrap")


def _kvm_gid() -> None:
    """The root's kvm group with the host's gid, before any package script runs."""
    import grp

    gid = str(grp.getgrnam("kvm").gr_gid)
    if _done("kvm-gid", gid):
        return
    groups = (ROOT / "etc/group").read_text()
    line = next((x for x in groups.splitlines() if x.startswith("kvm:")), None)
    if line is None:
        _check(in_root(["groupadd", "-r", "-g", gid, "kvm"], full=False, cwd="/"),
               "groupadd kvm")
    elif line.split(":")[2] != gid:
        raise TrixieError(f"the root's kvm group is not gid {gid} ({line}): remove {ROOT}")
    _mark("kvm-gid", gid)


def _packages() -> None:
    key = " ".join(PACKAGES)
    if _done("packages", key):
        return
    print(f"trixie: apt-get install {key}", flush=True)
    apt = ["env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "-q", "-y"]
    _check(in_root([*apt, "update"], full=False, cwd="/"), "apt-get update")
    _check(in_root([*apt, "install", "--no-install-recommends", *PACKAGES], full=False,
                   cwd="/"), "apt-get install")
    _mark("packages", key)


def _configure() -> None:
    """CA bundle and pip config (every time: cheap, and the host's may change); the
    libvirt settings the root needs."""
    for f in ("etc/ssl/certs/ca-certificates.crt", "etc/pip.conf"):
        if (Path("/") / f).is_file():
            (ROOT / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(Path("/") / f, ROOT / f)
    (ROOT / ".kvmnet/network-nftables.conf").write_text(
        '# kvmnet\'s Debian 13 lab, --firewall nftables\nfirewall_backend = "nftables"\n')
    tc = ROOT / WRAPPERS.lstrip("/") / "tc"
    tc.parent.mkdir(parents=True, exist_ok=True)
    tc.write_text(TC_WRAPPER)
    tc.chmod(0o755)
    qemu_conf = ROOT / "etc/libvirt/qemu.conf"
    line = 'stdio_handler = "file"'
    text = qemu_conf.read_text() if qemu_conf.is_file() else ""
    if line not in text.splitlines():
        qemu_conf.write_text(text + ("" if text.endswith("\n") or not text else "\n") +
                             "# kvmnet's Debian 13 lab: virtlogd 11.3 drops QEMU here\n" +
                             line + "\n")


def _venv() -> None:
    key = hashlib.sha256((CHECKOUT / "pyproject.toml").read_bytes()).hexdigest()
    if _done("venv", key):
        return
    print(f"trixie: venv {VENV} with kvmnet[test]", flush=True)
    if not (ROOT / VENV.lstrip("/") / "bin/python").exists():
        _check(in_root(["python3", "-m", "venv", "--system-site-packages", VENV],
                       full=False), "python3 -m venv")
    _check(in_root([f"{VENV}/bin/pip", "install", "-q", "-e", "/kvmnet[test]"],
                   full=False), "pip install")
    _mark("venv", key)


def setup() -> None:
    """Make or refresh the root; quick when nothing changed."""
    if os.geteuid() != 0:
        raise TrixieError("the Debian 13 lab needs root (debootstrap, chroot, mounts)")
    if shutil.which("debootstrap") is None:
        raise TrixieError("debootstrap is missing: run ./scripts/setup")
    _debootstrap()
    _kvm_gid()
    _packages()
    _configure()
    _venv()


def main(argv: list[str]) -> int:
    firewall = "iptables"
    if argv[:1] == ["--firewall"] and len(argv) > 1 and argv[1] in FIREWALLS:
        firewall, argv = argv[1], argv[2:]
    if not argv or argv[0] not in ("setup", "pytest", "run"):
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    ROOT.parent.mkdir(parents=True, exist_ok=True)
    with open(ROOT.parent / "lock", "w") as lock:
        # One set-up or run at a time: runs share the root's /etc/libvirt and /var/lib
        # (their own /run aside), and the tests use fixed network names.
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            setup()
        except TrixieError as e:
            print(f"trixie: {e}", file=sys.stderr)
            return 1
        if argv[0] == "setup":
            return 0
        args = [f"{VENV}/bin/pytest", *argv[1:]] if argv[0] == "pytest" else argv[1:]
        return in_root(args, firewall=firewall, capture=False).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
