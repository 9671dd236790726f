"""Pure reading of libvirt nwfilter XML: a canonical line per rule and filterref (what
plan compares and shows as drift), and kvmnet's set filters back to FirewallSets (what
import writes). The inverse of kvmnet.render.nwfilter."""

from __future__ import annotations

from itertools import groupby
from typing import Any

from lxml import etree

from kvmnet.model.firewall import DEFAULT_PRIORITY, FirewallRule, FirewallSet
from kvmnet.render.nwfilter import ELEMENT_FAMILY, ELEMENT_PROTO

_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, remove_blank_text=True)
_RULE_DEFAULTS = {"statematch": "true", "priority": "500"}


def _root(xml: str) -> etree._Element:
    return etree.fromstring(xml.encode(), _PARSER)


def filter_lines(xml: str) -> list[str]:
    """The filter as comparable lines: its chain, each filterref and each rule (with
    libvirt's defaults filled in), in order."""
    root = _root(xml)
    lines = [f"chain {root.get('chain', 'root')}"]
    for el in root:
        if el.tag == "filterref":
            params = " ".join(f"{p.get('name')}={p.get('value')}"
                              for p in el.iterfind("parameter"))
            lines.append(f"filterref {el.get('filter')}" + (f" {params}" if params else ""))
        elif el.tag == "rule":
            attrs = dict(_RULE_DEFAULTS)
            attrs.update((str(k), str(v)) for k, v in el.attrib.items())
            state = "" if attrs["statematch"] in ("true", "1") else " stateless"
            head = f"rule {attrs['priority']} {attrs.get('action')} {attrs.get('direction')}"
            for m in el:
                attrs_text = " ".join(f"{k!s}={v!s}" for k, v in sorted(m.attrib.items()))
                lines.append(f"{head}{state} {m.tag!s} {attrs_text}".rstrip())
            if len(el) == 0:
                lines.append(f"{head}{state}")
    return lines


def filter_diff(live_xml: str, wanted_xml: str) -> list[str]:
    """Plan detail lines: what the live filter has that is not wanted (-) and what is
    wanted but missing (+); [] when they hold the same rules."""
    live, want = filter_lines(live_xml), filter_lines(wanted_xml)
    if live == want:
        return []
    gone = [f"- {x}" for x in live if x not in want]
    new = [f"+ {x}" for x in want if x not in live]
    return gone + new or ["~ the same rules in another order"]


def filterrefs(xml: str) -> list[str]:
    """The filters a filter references, in order."""
    return [el.get("filter", "") for el in _root(xml).iterfind("filterref")]


def import_set(xml: str) -> FirewallSet:
    """A kvmnet set filter as the spec's FirewallSet (peers as address blocks)."""
    rules: list[FirewallRule] = []
    defaults = {"in": "accept", "out": "accept"}
    els = [el for el in _root(xml).iterfind("rule")]
    for prio, group in groupby(els, key=lambda e: int(e.get("priority", "500"))):
        items = list(group)
        if prio == DEFAULT_PRIORITY:
            for el in items:
                defaults[el.get("direction", "in")] = el.get("action", "accept")
            continue
        rules.append(FirewallRule.model_validate(_rule(items)))
    return FirewallSet.model_validate({"rules": rules, "default_in": defaults["in"],
                                       "default_out": defaults["out"]})


def _rule(items: list[etree._Element]) -> dict[str, Any]:
    first = items[0]
    matches = [m for el in items for m in el]
    proto = ELEMENT_PROTO.get(matches[0].tag, "all") if matches else "all"
    side = "src" if first.get("direction") == "in" else "dst"
    peers: list[str] = []
    ports: list[str] = []
    for m in matches:
        addr = m.get(f"{side}ipaddr")
        if addr is not None:
            fam = ELEMENT_FAMILY.get(m.tag, 4)
            mask = m.get(f"{side}ipmask", "32" if fam == 4 else "128")
            peers.append(f"{addr}/{mask}")
        start = m.get("dstportstart")
        if start is not None:
            end = m.get("dstportend", start)
            ports.append(start if end == start else f"{start}-{end}")
    return {"direction": first.get("direction"), "proto": proto,
            "ports": list(dict.fromkeys(ports)), "peer": list(dict.fromkeys(peers)),
            "action": first.get("action", "accept"),
            "stateful": first.get("statematch", "true") in ("true", "1")}


def nic_sets(filterref: str | None, filters: dict[str, str]) -> tuple[list[str], bool]:
    """The sets and anti-spoofing a NIC's `<filterref>` names through kvmnet's
    combination filter (`filters`: kvmnet's filters' XML by name); ([], False) for none
    or a filter kvmnet did not make."""
    from kvmnet.model.firewall import ANTISPOOF, SET_PREFIX

    xml = filters.get(filterref or "")
    if not xml:
        return [], False
    refs = filterrefs(xml)
    return ([r.removeprefix(SET_PREFIX) for r in refs if r.startswith(SET_PREFIX)],
            ANTISPOOF in refs)
