"""Install, check and remove kvmnet's port forward rules on this host (or inside
--netns). What the rules are and why they sit where they do: kvmnet.render.firewall.

Every nft call goes through kvmnet.backend.nft, in nft's JSON both ways (`nft -j list
ruleset` to read, `nft -j -f -` to write); `iptables-restore -w --noflush`
(ip6tables-restore) reads text, made by kvmnet.render.iptables. Each write is one
kernel transaction; the order is accepts (iptables backend) first, then one nft
transaction with table inet kvmnet and, on the nftables backend, the accepts in
libvirt's table. After writing, the ruleset is read again and every wanted rule must
be there (else LiveError).

`sync` (apply's firewall.sync) also keeps the state file ROOT/var/lib/kvmnet/
forwards.json (the forwards installed: the only input of the libvirt hook, see
backend/hook.py) and the hook itself; on failure it puts the previous state file and
rules back. `install_rules` is what the hook runs when a network starts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from kvmnet.backend import forward_files, nft
from kvmnet.backend.forward_files import state_path
from kvmnet.errors import LiveError
from kvmnet.model.forward import FirewallLive, Fwd, RulesetFacts, parse_state, state_json
from kvmnet.parse.firewall import parse_ruleset
from kvmnet.plan.forwards import rules_in_place, wanted_rule_parts
from kvmnet.render.firewall import nft_batch
from kvmnet.render.iptables import iptables_inputs


def _legacy(netns: str | None) -> bool:
    """iptables is iptables-legacy (libvirt's rules then do not show in nftables)."""
    try:
        r = nft.run(["iptables", "-V"], netns)
    except LiveError:
        return False
    return r.returncode == 0 and "legacy" in r.stdout


@contextmanager
def state_lock(state: Path) -> Iterator[None]:
    """apply's sync and the hook one at a time (flock on forwards.lock beside the state
    file), so the hook never installs a state file apply is replacing."""
    from kvmnet.backend.lock import locked  # here: a run that only reads never locks

    with locked(state.with_suffix(".lock"), "the forwards state lock"):
        yield


def _read(path: Path) -> str | None:
    """The state file's text, when root owns it and no one else can write it (its
    forwards become rules: kvmnet.backend.files.read_trusted)."""
    from kvmnet.backend.files import read_trusted

    try:
        data = read_trusted(path, "the forwards state file")
        return None if data is None else data.decode()
    except (OSError, UnicodeDecodeError) as e:
        if isinstance(e, UnicodeDecodeError):
            raise LiveError(f"cannot read {path}: it is not UTF-8 text") from None
        raise LiveError(f"cannot read {path}: {e.strerror or e}") from None


def read_firewall(netns: str | None = None, root: Path = Path("/")) -> FirewallLive:
    """kvmnet's rules as they are, libvirt's backend, the state file and the hook."""
    return start_read_firewall(netns, root)()


def start_read_firewall(netns: str | None = None, root: Path = Path("/")
                        ) -> Callable[[], FirewallLive]:
    """read_firewall in two halves: the files are read and nft is started now; calling
    the result waits for nft (libvirt is read meanwhile: kvmnet.service.ops.read_live)."""
    path = state_path(root)
    state, hook = _read(path), forward_files.hook_status(root)
    ruleset = nft.start_list_ruleset(netns)

    def finish() -> FirewallLive:
        try:
            facts = parse_ruleset(ruleset())
        except LiveError as e:
            return FirewallLive(state_text=state, state_path=str(path), hook=hook,
                                error=str(e))
        legacy = not facts.backends and _legacy(netns)
        return FirewallLive(facts, state, hook, None, legacy, str(path))

    return finish


def _write_rules(fwds: Sequence[Fwd], facts: RulesetFacts, netns: str | None) -> list[str]:
    """The accepts of the iptables backend first, then the one nft transaction."""
    done: list[str] = []
    for tool, text, note in iptables_inputs(fwds, facts):
        nft.write([tool, "-w", "--noflush"], text, netns)
        done.append(f"{tool}: {note}")
    batch = nft_batch(fwds, facts)
    if batch is not None:
        nft.apply_batch(batch, netns)
        done.append("nft: table inet kvmnet" if fwds else "nft: removed table inet kvmnet")
    return done


def install_rules(fwds: Sequence[Fwd], netns: str | None = None) -> list[str]:
    """Make kvmnet's table and chains hold exactly the rules of `fwds` (none: remove
    them); what was written, [] when everything was in place already."""
    facts = parse_ruleset(nft.list_ruleset(netns))
    if rules_in_place(fwds, facts):
        return []
    done = _write_rules(fwds, facts, netns)
    after = parse_ruleset(nft.list_ruleset(netns))
    missing = wanted_rule_parts(fwds, after) - set(after.parts)
    if missing:
        raise LiveError("kvmnet's forward rules are not all in place after the update: "
                        + "; ".join(sorted(missing)[:5]))
    return done


def sync(fwds: Sequence[Fwd], netns: str | None = None, root: Path = Path("/")) -> str:
    """apply's firewall.sync: state file, rules, hook; all back as they were on failure."""
    path = state_path(root)
    if fwds:
        forward_files.check_hook_folder(root)
    with state_lock(path):
        msg = _sync(fwds, netns, root, path)
    if not fwds:
        from kvmnet.backend.files import remove

        remove(path.with_suffix(".lock"))
    return msg


def _sync(fwds: Sequence[Fwd], netns: str | None, root: Path, path: Path) -> str:
    before = _read(path)
    try:
        previous = parse_state(before) if before else ()
    except ValueError:
        previous = ()
    _set_state(path, state_json(fwds) if fwds else None)
    try:
        done = install_rules(fwds, netns)
    except LiveError as e:
        _set_state(path, before)
        try:
            install_rules(previous, netns)
            back = "the previous rules and state file are back"
        except LiveError as e2:
            back = f"putting the previous rules back failed too: {e2}"
        raise LiveError(f"{e}; {back}") from None
    notes = [", ".join(done) if done else "rules were in place"]
    if fwds:
        if forward_files.install(root):
            notes.append(f"hook {forward_files.hook_path(root)} written: libvirtd reads new hook "
                         "scripts when it starts or reloads (once: systemctl reload "
                         "libvirtd, or virtnetworkd)")
    elif forward_files.remove(root):
        notes.append("hook removed")
    return f"{len(fwds)} forward(s): " + "; ".join(notes)


def _set_state(path: Path, text: str | None) -> None:
    from kvmnet.backend.files import (  # here: a run that only reads never needs them
        remove,
        write_bytes_atomic,
    )

    try:
        if text is None:
            remove(path)
            return
        write_bytes_atomic(path, text.encode(), 0o644)
    except OSError as e:
        raise LiveError(f"cannot write {path}: {e.strerror or e}") from None
