"""kvmnet's two files for port forwards, and nothing that writes rules: the state file
ROOT/var/lib/kvmnet/forwards.json (the forwards installed) and the libvirt network hook
ROOT/etc/libvirt/hooks/network.d/kvmnet-forwards (why a hook, and how libvirt runs it:
kvmnet.backend.hook, which is what the script runs).

Below both kvmnet.backend.firewall (apply's sync writes the state file and the hook)
and kvmnet.backend.hook (the hook's Python side, which installs the rules): imports go
one way, hook -> firewall -> forward_files. Light on purpose: a plan without forwards
asks `has_forward_state` and loads no firewall code.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from kvmnet.errors import KvmnetError, LiveError

HOOK_FILE = "etc/libvirt/hooks/network.d/kvmnet-forwards"
# (the one other path under libvirt's folders: host.resolve_guests' hook, backend.names_hook)
NAMES_HOOK_FILE = "etc/libvirt/hooks/network.d/kvmnet-names"
# (and guests' VLANs' qemu hook, where libvirt cannot set them: backend.vlan_hook)
VLAN_HOOK_FILE = "etc/libvirt/hooks/qemu.d/kvmnet-vlans"
LIBVIRT_CONF = "etc/libvirt"
LOG_FILE = "var/log/kvmnet/hook.log"
MARK = "# kvmnet-hook v1"
STATE_FILE = "var/lib/kvmnet/forwards.json"  # the forwards installed (backend/firewall.sync)


def hook_path(root: Path) -> Path:
    return Path(root) / HOOK_FILE


def state_path(root: Path) -> Path:
    return Path(root) / STATE_FILE


def has_forward_state(root: Path = Path("/")) -> bool:
    """Has kvmnet ever left port forwards here that are not cleanly gone? Its state file,
    the lock beside it (removed only after a sync that left no forwards finished) or its
    libvirt hook: if none exists, kvmnet's rules cannot exist, and a spec without
    forwards needs no nft read (a no-op apply then runs no nft, nor loads the firewall
    code: this is here, not in backend/firewall)."""
    path = state_path(root)
    return any(os.path.lexists(p) for p in (path, path.with_suffix(".lock"), hook_path(root)))


def hook_env(root: Path, python: str | None = None) -> str:
    """The lines a per-object hook (names, VLANs) starts with after its comment: a PATH
    of the system's folders, the Python that runs kvmnet and the log, both quoted."""
    import shlex

    py = shlex.quote(python or sys.executable)
    log = shlex.quote(str(Path(root).resolve() / LOG_FILE))
    return f"PATH=/usr/sbin:/usr/bin:/sbin:/bin:$PATH\nexport PATH\nPY={py}\nLOG={log}\n"


def hook_text(root: Path, python: str | None = None) -> str:
    import shlex

    root = Path(root).resolve()
    py = shlex.quote(python or sys.executable)
    state = shlex.quote(str(state_path(root)))
    log = shlex.quote(str(root / LOG_FILE))
    return f"""#!/bin/sh
{MARK}: written by `kvmnet apply`, removed by it when no forwards are left.
# libvirt runs it as: kvmnet-forwards NETWORK OPERATION SUBOPERATION - (network XML on
# stdin). When a network has started, it puts kvmnet's port forward rules back, from
# the state file kvmnet apply wrote. It always exits 0: a failing hook would stop
# libvirt from starting the network.
cat >/dev/null
PATH=/usr/sbin:/usr/bin:/sbin:/bin:$PATH
export PATH
PY={py}
STATE={state}
LOG={log}
if [ "$2" = started ] && [ -x "$PY" ] && [ -f "$STATE" ]; then
    "$PY" -m kvmnet.backend.hook --state "$STATE" --log "$LOG" -- "$@" </dev/null \
        >/dev/null 2>&1
fi
exit 0
"""


def hook_status(root: Path) -> str | None:
    """'ok' (kvmnet's current hook, executable), 'stale' (anything else there), None."""
    path = hook_path(root)
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError:
        return "stale"
    return "ok" if text == hook_text(root) and os.access(path, os.X_OK) else "stale"


def check_hook_folder(root: Path) -> None:
    """Before apply changes anything for forwards: the hook goes into libvirt's own
    configuration folder ROOT/etc/libvirt (hooks/network.d/ below it is made when
    missing), which the libvirt daemon that runs the networks reads: libvirtd, or
    virtnetworkd with modular daemons. Checked, not assumed: a host where it is missing
    runs no local libvirt daemon to call the hook."""
    conf = Path(root) / "etc/libvirt"
    if not conf.is_dir():
        raise LiveError(f"{conf} does not exist: port forwards need a libvirt daemon on this "
                        "machine (libvirtd, or virtnetworkd with modular daemons), whose "
                        f"network hook in {hook_path(root).parent} puts them back after a "
                        "reboot; nothing was changed")


def install(root: Path) -> bool:
    """Write the hook (0755); True when it did not exist before (libvirtd must reload)."""
    from kvmnet.backend.files import (
        write_bytes_atomic,  # here: a run that only reads never needs it
    )

    path = hook_path(root)
    existed = path.exists()
    if hook_status(root) == "ok":
        return False
    try:
        write_bytes_atomic(path, hook_text(root).encode(), 0o755)
    except OSError as e:
        raise LiveError(f"cannot write the libvirt hook {path}: {e.strerror or e}") from None
    return not existed


def remove(root: Path) -> bool:
    from kvmnet.backend import files

    return files.remove(hook_path(root))


def append_line(path: Path | str, text: str) -> None:
    """Append text to a log (0640) opened as files.open_file opens it; a log that cannot be
    written safely is skipped, never raised: the libvirt hooks log with it, and a hook
    must never fail libvirt's start of a network."""
    from kvmnet.backend import files

    try:
        fd = files.open_file(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
        with os.fdopen(fd, "a") as log:
            log.write(text)
    except (OSError, KvmnetError):
        pass
