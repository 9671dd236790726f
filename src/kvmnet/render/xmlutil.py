"""Small lxml helpers shared by the XML renderers and parsers.

Verbatim XML (what kvmnet keeps but does not model) travels as strings:
elements as compact XML with only the namespaces they use, attributes as
`name="value"`. `Reader` hands out an element's attributes and children
and reports what was never taken, so a parser cannot drop XML silently.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager

from lxml import etree

Element = etree._Element

_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, remove_comments=True,
                          remove_pis=True, huge_tree=False)
_ATTR_RE = re.compile(r'^\s*([A-Za-z_{][^=\s]*)\s*=\s*(?:"([^"]*)"|\'([^\']*)\')\s*$')
_ENTITIES = {"&quot;": '"', "&apos;": "'"}


def parse_xml(text: str | bytes) -> Element:
    """Parse a document safely: no entity expansion, no network, comments dropped."""
    return etree.fromstring(text.encode() if isinstance(text, str) else text, _PARSER)


def sub(parent: Element, tag: str, *attrs: tuple[str, object | None]) -> Element:
    """A child element with the attributes that are not None, in the given order."""
    el = etree.SubElement(parent, tag)
    set_attrs(el, attrs)
    return el


def set_attrs(el: Element, attrs: Iterable[tuple[str, object | None]]) -> None:
    for name, value in attrs:
        if value is not None:
            el.set(name, str(value))


def yes_no(value: bool | None) -> str | None:
    return None if value is None else ("yes" if value else "no")


def on_off(value: bool | None) -> str | None:
    return None if value is None else ("on" if value else "off")


def qname(el: Element) -> str:
    """Tag as written: 'dnsmasq:options' for a namespaced element."""
    q = etree.QName(el)
    if q.namespace is None:
        return q.localname
    prefix = el.prefix
    return f"{prefix}:{q.localname}" if prefix else f"{{{q.namespace}}}{q.localname}"


def element_to_str(el: Element) -> str:
    """Compact XML of one element: blank text dropped, only the namespaces it uses.
    Blank text is indentation where the element has children, or where it holds a
    line break: libvirt writes an empty `<portgroup name='v'>` as an open and a close
    tag on two lines, which reads as `<portgroup name="v"/>` does. (Spaces alone in an
    element without children are kept: they may be its value.)"""
    c = copy.deepcopy(el)
    c.tail = None
    for e in c.iter():
        if e.text is not None and not e.text.strip() and (len(e) or "\n" in e.text):
            e.text = None
        if e is not c and e.tail is not None and not e.tail.strip():
            e.tail = None
    etree.cleanup_namespaces(c)
    return etree.tostring(c, encoding="unicode", with_tail=False)


def str_to_element(text: str) -> Element:
    return parse_xml(text)


def attr_to_str(name: str, value: str) -> str:
    # imported here: xml.sax.saxutils pulls in urllib.request, http.client and ssl
    from xml.sax.saxutils import quoteattr

    return f"{name}={quoteattr(value)}"


def str_to_attr(text: str) -> tuple[str, str]:
    m = _ATTR_RE.match(text)
    if not m:
        raise ValueError(f"{text!r} is not an XML attribute: write name=\"value\"")
    value = m.group(2) if m.group(2) is not None else m.group(3)
    from xml.sax.saxutils import unescape  # see attr_to_str

    return m.group(1), unescape(value, _ENTITIES)


def order_children(el: Element, order: Sequence[str]) -> None:
    """Stable-sort children into libvirt's order ('a|b': same rank); unknown tags go last."""
    rank = {tag: i for i, group in enumerate(order) for tag in group.split("|")}
    kids = list(el)
    kids.sort(key=lambda k: rank.get(qname(k), len(order)))
    for k in kids:
        el.append(k)


def order_attrs(el: Element, order: Sequence[str]) -> None:
    rank = {name: i for i, name in enumerate(order)}
    items = sorted(((str(k), str(v)) for k, v in el.attrib.items()),
                   key=lambda kv: rank.get(kv[0], len(order)))
    el.attrib.clear()
    for k, v in items:
        el.set(k, v)


def pretty(el: Element) -> str:
    """Indented by two spaces like libvirt, no XML declaration, trailing newline."""
    c = copy.deepcopy(el)
    etree.indent(c, space="  ")
    return etree.tostring(c, encoding="unicode") + "\n"


class Reader:
    """Hands out one element's attributes and children; the rest is left over."""

    def __init__(self, el: Element, path: str) -> None:
        self.el = el
        self.path = path
        self._attrs: set[str] = set()
        self._kids: dict[int, Element] = {}  # holding the proxies keeps their ids stable
        self._by_tag: dict[str, list[Element]] | None = None

    def attr(self, name: str) -> str | None:
        value = self.el.get(name)
        if value is not None:
            self._attrs.add(name)
        return value

    def drop(self, *names: str) -> None:
        """Mark attributes as read and deliberately ignored (libvirt runtime state)."""
        self._attrs.update(n for n in names if self.el.get(n) is not None)

    def int_attr(self, name: str) -> int | None:
        value = self.attr(name)
        if value is None:
            return None
        try:
            return int(value, 0) if value.lower().startswith("0x") else int(value)
        except ValueError:
            raise ValueError(f"<{qname(self.el)} {name}='{value}'>: not a number") from None

    def children(self, tag: str) -> list[Element]:
        out = self._matching(tag)
        self._kids.update((id(k), k) for k in out)
        return out

    def child(self, tag: str) -> Element | None:
        """The first such child; a second one is left over, not lost."""
        kids = self._matching(tag)
        if not kids:
            return None
        self._kids[id(kids[0])] = kids[0]
        return kids[0]

    def _matching(self, tag: str) -> list[Element]:
        """The element children with this tag: by lxml's own tag (a plain or Clark name),
        from an index built once; a prefixed name as written ('dnsmasq:options') by
        looking up each child's prefix."""
        if ":" in tag and tag[:1] != "{":
            return [k for k in self.el if isinstance(k.tag, str) and qname(k) == tag]
        if self._by_tag is None:
            self._by_tag = {}
            for k in self.el:
                if isinstance(k.tag, str):
                    self._by_tag.setdefault(k.tag, []).append(k)
        return self._by_tag.get(tag, [])

    def text(self) -> str:
        return (self.el.text or "").strip()

    def leftover_attrs(self) -> list[tuple[str, str]]:
        return [(str(k), str(v)) for k, v in self.el.attrib.items() if k not in self._attrs]

    def leftover_children(self) -> list[Element]:
        return [k for k in self.el if isinstance(k.tag, str) and id(k) not in self._kids]


def canonical(xml: str | bytes | Element) -> str:
    """C14N form without insignificant whitespace: equal for XML libvirt reads alike
    (quote style, `<ip/>` or `<ip>\\n</ip>`, indentation)."""
    root = copy.deepcopy(xml) if isinstance(xml, etree._Element) else parse_xml(xml)
    for e in root.iter():
        if e.text is not None and not e.text.strip():
            e.text = None
        if e.tail is not None and not e.tail.strip():
            e.tail = None
    return etree.tostring(root, method="c14n").decode()


class Leftovers:
    """Collects what a parser did not read: xml_extra (path -> verbatim XML; a path
    ending in '@' holds attributes) and the names of those things."""

    def __init__(self) -> None:
        self.extra: dict[str, list[str]] = {}
        self.names: list[str] = []

    def keep(self, r: Reader) -> None:
        attrs = r.leftover_attrs()
        if attrs:
            self.extra.setdefault(f"{r.path}@", []).extend(attr_to_str(k, v) for k, v in attrs)
            self.names.extend(f"{r.path}@{k}" for k, _ in attrs)
        for k in r.leftover_children():
            self.keep_element(r.path, k)

    def keep_element(self, path: str, el: Element) -> None:
        self.extra.setdefault(path, []).append(element_to_str(el))
        self.names.append(f"{path}/{qname(el)}" if path else qname(el))

    @contextmanager
    def all_or_nothing(self) -> Iterator[None]:
        """On an exception, forget what was kept inside (the caller keeps the whole)."""
        extra = {k: list(v) for k, v in self.extra.items()}
        names = list(self.names)
        try:
            yield
        except Exception:
            self.extra, self.names = extra, names
            raise


def insert_extras(root: Element, extra: Mapping[str, list[str]],
                  attr_order: Mapping[str, Sequence[str]]) -> None:
    """Leftovers back in place; deepest paths first, so an index ('ip[1]') counts
    only the elements built from the model."""
    for key in sorted(extra, key=lambda k: (-k.count("/") - bool(k.rstrip("@")), k)):
        if key.endswith("@"):
            el = resolve(root, key[:-1])
            for text in extra[key]:
                name, value = str_to_attr(text)
                if el.get(name) is None:  # the modelled value wins
                    el.set(name, value)
            order_attrs(el, attr_order.get(qname(el), ()))
            continue
        parent = resolve(root, key)
        for text in extra[key]:
            try:
                parent.append(str_to_element(text))
            except etree.XMLSyntaxError as e:
                raise ValueError(f"xml_extra[{key!r}]: {text!r} is not XML: {e}") from None


def resolve(root: Element, path: str) -> Element:
    """Element at 'a/b[2]/c' under root; a missing unindexed element is created."""
    el = root
    for seg in filter(None, path.split("/")):
        tag, _, idx = seg.partition("[")
        kids = [k for k in el if isinstance(k.tag, str) and qname(k) == tag]
        if idx:
            n = int(idx.rstrip("]"))
            if n >= len(kids):
                raise ValueError(f"xml_extra path {path!r}: there is no <{tag}> number {n} "
                                 f"(counting from 0) under <{qname(el)}>")
            el = kids[n]
        else:
            el = kids[0] if kids else etree.SubElement(el, tag)
    return el
