"""SOAP envelopes: hardened parsing (whole or head-only), version detection, building."""

from __future__ import annotations

import enum
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from lxml import etree

from dynasoar import ns
from dynasoar.errors import MalformedMessage, VersionMismatch

#: Bytes of envelope we are willing to read before the Body starts (the head holds only
#: headers; anything bigger is not an envelope we want to route).
MAX_HEAD_BYTES = 256 * 1024


class SoapVersion(enum.Enum):
    SOAP11 = "1.1"
    SOAP12 = "1.2"

    @property
    def envelope_ns(self) -> str:
        return ns.SOAP11_ENV if self is SoapVersion.SOAP11 else ns.SOAP12_ENV

    @property
    def media_type(self) -> str:
        return "text/xml" if self is SoapVersion.SOAP11 else "application/soap+xml"

    def content_type(self, action: str | None = None) -> str:
        """The HTTP Content-Type for a message; SOAP 1.2 carries the action as a parameter."""
        if self is SoapVersion.SOAP12 and action:
            return f'application/soap+xml; charset=utf-8; action="{action}"'
        return f"{self.media_type}; charset=utf-8"

    @classmethod
    def from_namespace(cls, uri: str) -> SoapVersion:
        if uri == ns.SOAP11_ENV:
            return cls.SOAP11
        if uri == ns.SOAP12_ENV:
            return cls.SOAP12
        raise VersionMismatch(
            f"the envelope namespace {uri or '(none)'!r} is neither SOAP 1.1 nor SOAP 1.2"
        )

    @classmethod
    def from_media_type(cls, media_type: str) -> SoapVersion | None:
        media_type = media_type.strip().lower()
        if media_type == "text/xml":
            return cls.SOAP11
        if media_type == "application/soap+xml":
            return cls.SOAP12
        return None


_local = threading.local()


def _parser() -> etree.XMLParser:
    """This thread's hardened parser (lxml parsers may be reused, not shared across threads)."""
    parser = getattr(_local, "parser", None)
    if parser is None:
        parser = _local.parser = new_parser()
    return parser


class _NothingExternal(etree.Resolver):  # type: ignore[misc]
    """Resolves every external DTD subset or entity a document names to nothing.

    ``load_dtd=False`` and ``no_network=True`` are not enough: libxml2 still opens the local
    file an external subset or a parameter entity names (``<!DOCTYPE x SYSTEM
    "file:///dev/zero">`` never returns). Such a document is refused as a DTD afterwards.
    """

    def resolve(self, url: str, public_id: str, context: object) -> object:
        return self.resolve_string("", context)


def new_parser() -> etree.XMLParser:
    """A parser that loads no DTD, expands no entity and touches no file or network."""
    parser = etree.XMLParser(
        resolve_entities=False,
        load_dtd=False,
        no_network=True,
        dtd_validation=False,
        huge_tree=False,
        remove_pis=True,
        collect_ids=False,
    )
    parser.resolvers.add(_NothingExternal())
    return parser


@dataclass
class Envelope:
    """A parsed SOAP envelope; for a head-only parse ``body`` has no children yet."""

    version: SoapVersion
    root: etree._Element
    header_blocks: list[etree._Element]
    body: etree._Element | None
    #: The qualified name of the Body's first child ("{ns}local"), when known.
    body_qname: str | None = None
    extra: dict[str, object] = field(default_factory=dict)


def parse_envelope(data: bytes) -> Envelope:
    """Parse a whole (small) envelope: management messages, replies."""
    try:
        root = etree.fromstring(data, _parser())
    except etree.XMLSyntaxError as exc:
        raise MalformedMessage(f"the message is not well-formed XML: {exc}") from exc
    _refuse_doctype(root)
    version = _envelope_version(root)
    header, body = _header_and_body(root, version)
    body_qname = body[0].tag if body is not None and len(body) else None
    blocks = [el for el in header if isinstance(el.tag, str)] if header is not None else []
    return Envelope(
        version, root, blocks, body, body_qname if isinstance(body_qname, str) else None
    )


class HeadParser:
    """Incremental parser that stops once the Body's first child (or its end) is seen.

    The routing interceptor feeds it the first chunks of a relayed message: it learns the SOAP
    version, the header blocks and the body's first element without building the body.
    """

    def __init__(self, max_head_bytes: int = MAX_HEAD_BYTES) -> None:
        self._parser = etree.XMLPullParser(
            events=("start", "end"),
            resolve_entities=False,
            load_dtd=False,
            no_network=True,
            huge_tree=False,
            remove_pis=True,
            collect_ids=False,
        )
        self._parser.resolvers.add(_NothingExternal())
        self._max = max_head_bytes
        self._seen = 0
        self._depth = 0
        self._root: etree._Element | None = None
        self._version: SoapVersion | None = None
        self._header: etree._Element | None = None
        self._body: etree._Element | None = None
        self.result: Envelope | None = None

    def feed(self, chunk: bytes) -> Envelope | None:
        """Feed bytes; returns the envelope head once it is complete, else None."""
        if self.result is not None:
            return self.result
        # Never parse past the limit, so the verdict does not depend on how bytes were split.
        room = self._max - self._seen
        self._seen += len(chunk)
        try:
            self._parser.feed(chunk[:room] if len(chunk) > room else chunk)
            for event, el in self._parser.read_events():
                self._on_event(event, el)
                if self.result is not None:
                    return self.result
        except etree.XMLSyntaxError as exc:
            raise MalformedMessage(f"the message is not well-formed XML: {exc}") from exc
        if self._seen > self._max:
            raise MalformedMessage(
                f"no SOAP Body within the first {self._max} bytes of the message"
            )
        return None

    def close(self) -> Envelope:
        """The input ended: the head must be complete by now."""
        if self.result is not None:
            return self.result
        try:
            self._parser.close()
        except etree.XMLSyntaxError as exc:
            raise MalformedMessage(f"the message is not well-formed XML: {exc}") from exc
        raise MalformedMessage("the message ended before a SOAP Body")

    def _on_event(self, event: str, el: etree._Element) -> None:
        if not isinstance(el.tag, str):
            return
        if event == "start":
            if ":" in el.tag and el.tag[0] != "{":
                # libxml2's push parser lets a namespace error through as a name like ":a"
                # or "p:a" (reporting it only at close); the whole-document parser refuses it.
                raise MalformedMessage(
                    f"the message is not well-formed XML: {el.tag!r} is not a qualified name "
                    "with a declared prefix"
                )
            self._depth += 1
            if self._depth == 1:
                self._root = el
                _refuse_doctype(el)
                self._version = _envelope_version(el)
            elif self._depth == 2:
                self._on_envelope_child(el)
            elif self._depth == 3 and self._body is not None:
                self._finish(el.tag)
        else:
            self._depth -= 1
            if self._depth == 1 and el is self._body:
                self._finish(None)  # an empty Body

    def _on_envelope_child(self, el: etree._Element) -> None:
        assert self._version is not None
        env = self._version.envelope_ns
        if el.tag == f"{{{env}}}Header" and self._header is None and self._body is None:
            self._header = el
        elif el.tag == f"{{{env}}}Body" and self._body is None:
            self._body = el
        else:
            raise MalformedMessage(f"unexpected element {el.tag} in the SOAP Envelope")

    def _finish(self, body_qname: str | None) -> None:
        assert self._root is not None and self._version is not None
        header = self._header
        blocks = [b for b in header if isinstance(b.tag, str)] if header is not None else []
        self.result = Envelope(self._version, self._root, blocks, self._body, body_qname)


def _refuse_doctype(root: etree._Element) -> None:
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None:
        raise MalformedMessage("a SOAP message must not contain a DTD (SOAP 1.1 §3, SOAP 1.2 §5)")


#: The Clark-notation tags of each version's Envelope, Header and Body (compared as strings,
#: once per message routed).
_ENVELOPE_TAGS = {
    f"{{{ns.SOAP11_ENV}}}Envelope": SoapVersion.SOAP11,
    f"{{{ns.SOAP12_ENV}}}Envelope": SoapVersion.SOAP12,
}
_HEADER_BODY = {
    version: (f"{{{version.envelope_ns}}}Header", f"{{{version.envelope_ns}}}Body")
    for version in SoapVersion
}


def _envelope_version(root: etree._Element) -> SoapVersion:
    version = _ENVELOPE_TAGS.get(root.tag)
    if version is not None:
        return version
    namespace, local = clark(root.tag)
    if local != "Envelope":
        raise MalformedMessage(f"the document element is {root.tag}, not a SOAP Envelope")
    return SoapVersion.from_namespace(namespace)


def clark(tag: str) -> tuple[str, str]:
    """A Clark-notation tag's (namespace, local name). Unlike ``etree.QName``, it takes any
    namespace URI a sender wrote, "}" included (a local name cannot hold one)."""
    if tag.startswith("{"):
        namespace, _, local = tag[1:].rpartition("}")
        return namespace, local
    return "", tag


def _header_and_body(
    root: etree._Element, version: SoapVersion
) -> tuple[etree._Element | None, etree._Element | None]:
    header_tag, body_tag = _HEADER_BODY[version]
    header = body = None
    for child in root:
        tag = child.tag
        if not isinstance(tag, str):
            continue
        if tag == header_tag and header is None and body is None:
            header = child
        elif tag == body_tag and body is None:
            body = child
        else:
            raise MalformedMessage(f"unexpected element {child.tag} in the SOAP Envelope")
    if body is None:
        raise MalformedMessage("the SOAP Envelope has no Body")
    return header, body


def build_envelope(
    version: SoapVersion,
    body_children: Sequence[etree._Element],
    header_blocks: Iterable[etree._Element] = (),
    nsmap: dict[str | None, str] | None = None,
) -> etree._Element:
    env = version.envelope_ns
    root = etree.Element(f"{{{env}}}Envelope", nsmap={"soap": env, **(nsmap or {})})
    blocks = list(header_blocks)
    if blocks:
        etree.SubElement(root, f"{{{env}}}Header").extend(blocks)
    etree.SubElement(root, f"{{{env}}}Body").extend(body_children)
    return root


def serialize(root: etree._Element | etree._ElementTree) -> bytes:
    data: bytes = etree.tostring(root, xml_declaration=True, encoding="utf-8")
    return data


def ensure_header(root: etree._Element, version: SoapVersion) -> etree._Element:
    """The envelope's Header element, created before the Body when missing."""
    env = version.envelope_ns
    header = root.find(f"{{{env}}}Header")
    if header is None:
        header = etree.Element(f"{{{env}}}Header")
        root.insert(0, header)
    return header


_TARGETS_US = {
    SoapVersion.SOAP11: {None, "http://schemas.xmlsoap.org/soap/actor/next"},
    SoapVersion.SOAP12: {
        None,
        ns.SOAP12_ENV + "/role/next",
        ns.SOAP12_ENV + "/role/ultimateReceiver",
    },
}


def not_understood(envelope: Envelope, understood: Iterable[str]) -> list[tuple[str, str]]:
    """Header blocks for us marked mustUnderstand that ``understood`` names neither by their
    namespace nor by their own name ("{ns}local")."""
    env = envelope.version.envelope_ns
    role_attr = "role" if envelope.version is SoapVersion.SOAP12 else "actor"
    known = set(understood)
    missed = []
    for block in envelope.header_blocks:
        if block.get(f"{{{env}}}mustUnderstand", "0").strip() not in ("1", "true"):
            continue
        if block.get(f"{{{env}}}{role_attr}") not in _TARGETS_US[envelope.version]:
            continue
        namespace, local = clark(block.tag)
        if namespace not in known and block.tag not in known:
            missed.append((namespace, local))
    return missed
