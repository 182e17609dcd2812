"""Reading a signed SOAP envelope back (WS-Security 1.0/1.1, X.509 token profile), pure lxml:
its parts, each found exactly once, with every signed reference resolved to the one element it
may mean. The layout and its names are :mod:`dynasoar.soap.wsse`; xmlsec checks the digests
and the signature value in :mod:`dynasoar.soap.security`.

Signature wrapping is stopped here: a Reference must name, by ``wsu:Id``, exactly one element
of the document, and that element must be the envelope's Body, the Timestamp of its one
Security header, a header block of its own, or a token; the Body, the Timestamp and every
WS-Addressing header block must all be covered. So the elements the application reads next
are the ones whose digests xmlsec checks.

Children are found with ``iterchildren(tag)`` rather than ``find()``, whose path engine runs in
Python: this runs on every signed message.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from lxml import etree

from dynasoar import ns
from dynasoar.errors import WSSE, InvalidSecurity
from dynasoar.soap.envelope import clark
from dynasoar.soap.wsse import (
    BASE64_BINARY,
    DIGEST_METHODS,
    DS,
    EXC_C14N,
    ID,
    MAX_REFERENCES,
    SECURITY,
    SIGNATURE_METHODS,
    TOKEN,
    WSU,
    X509V3,
    addressing_blocks,
    digest,
    version_of,
)

_XML_ID = f"{{{ns.XML}}}id"
_TRANSFORMS = f"{{{DS}}}Transforms"
_TRANSFORM = f"{{{DS}}}Transform"
_INCLUSIVE = f"{{{EXC_C14N}}}InclusiveNamespaces"
_DIGEST_PARTS = (f"{{{DS}}}DigestMethod", f"{{{DS}}}DigestValue")
# Compiled once; lxml serializes calls of one XPath object from several threads.
_WITH_AN_ID = etree.XPath("//*[@wsu:Id or @xml:id]", namespaces={"wsu": WSU})


# -- reading: where things are --------------------------------------------------------------


@dataclass(frozen=True)
class Reference:
    """One ds:Reference, its algorithms already vetted."""

    uri_id: str
    digest_method: str  # a hashlib name
    digest_value: str
    inclusive_prefixes: tuple[str, ...]


@dataclass
class SignedParts:
    """A signed envelope's parts, each found exactly once, and what its references mean."""

    body: etree._Element
    header: etree._Element
    security: etree._Element
    signature: etree._Element
    timestamp: etree._Element
    references: list[Reference]
    #: Reference id → the one element carrying it, checked to be one it may sign.
    targets: dict[str, etree._Element]

    @classmethod
    def read(cls, root: etree._Element) -> SignedParts:
        """Locate, resolve and check coverage; raise InvalidSecurity on anything amiss."""
        env = version_of(root).envelope_ns
        bodies = list(root.iterchildren(f"{{{env}}}Body"))
        if len(bodies) != 1:
            raise InvalidSecurity(f"the envelope has {len(bodies)} Body elements, not one")
        header = next(root.iterchildren(f"{{{env}}}Header"), None)
        blocks = list(header.iterchildren(SECURITY)) if header is not None else []
        if not blocks:
            raise InvalidSecurity(
                "the message is not signed: it has no wsse:Security header, and this endpoint "
                "accepts only messages signed with a trusted certificate"
            )
        if len(blocks) > 1:
            raise InvalidSecurity(f"the message has {len(blocks)} wsse:Security headers, not one")
        assert header is not None
        security = blocks[0]
        signature = _one(security, f"{{{DS}}}Signature", "ds:Signature")
        timestamp = _one(security, f"{{{WSU}}}Timestamp", "wsu:Timestamp")
        references = read_signed_info(signature)
        targets = _resolve(root, {ref.uri_id for ref in references})
        parts = cls(bodies[0], header, security, signature, timestamp, references, targets)
        parts._check_targets()
        return parts

    def _required(self) -> dict[etree._Element, str]:
        names = {self.body: "the soap:Body", self.timestamp: "the wsu:Timestamp"}
        for block in addressing_blocks(self.header):
            names[block] = f"the {_prefixed(block)} header"
        return names

    def _check_targets(self) -> None:
        # Disjoint subtrees only (so not the Security block, which holds Timestamp and token).
        tokens = self.security.iterchildren(TOKEN)
        blocks = [b for b in self.header if isinstance(b.tag, str) and b is not self.security]
        allowed = {self.body, self.timestamp, *blocks, *tokens}
        for uri_id, element in self.targets.items():
            if element not in allowed:
                parent = element.getparent()
                where = _prefixed(parent) if parent is not None else "nothing"
                raise InvalidSecurity(
                    f"Reference #{uri_id} points to {_prefixed(element)} inside {where}, not to "
                    "this envelope's Body, Timestamp or a header block: signature wrapping is "
                    "refused"
                )
        signed = set(self.targets.values())
        missing = [name for element, name in self._required().items() if element not in signed]
        if missing:
            raise InvalidSecurity(
                f"the signature does not cover {', '.join(missing)}; a signed message must sign "
                "its Body, its wsu:Timestamp and every WS-Addressing header"
            )

    def token(self) -> bytes:
        """The DER bytes of the X.509 certificate the signature's KeyInfo points to, in this
        Security header (:meth:`TrustStore.signer <dynasoar.soap.trust.TrustStore.signer>`
        reads them). Read here, never resolved by xmlsec, so an id elsewhere cannot stand in.
        """
        reference = next(
            (
                reference
                for key_info in self.signature.iterchildren(f"{{{DS}}}KeyInfo")
                for token_reference in key_info.iterchildren(f"{{{WSSE}}}SecurityTokenReference")
                for reference in token_reference.iterchildren(f"{{{WSSE}}}Reference")
            ),
            None,
        )
        uri = (reference.get("URI") or "") if reference is not None else ""
        tokens = [
            t for t in self.security.iterchildren(TOKEN) if uri[:1] == "#" and t.get(ID) == uri[1:]
        ]
        if len(tokens) != 1:
            raise InvalidSecurity(
                "the signature's KeyInfo must reference, by wsu:Id, one "
                "wsse:BinarySecurityToken in the same wsse:Security header"
            )
        token = tokens[0]
        encoding = token.get("EncodingType", BASE64_BINARY)
        if token.get("ValueType") != X509V3 or encoding != BASE64_BINARY:
            raise InvalidSecurity("the BinarySecurityToken must be an X509v3 token in Base64Binary")
        try:
            return base64.b64decode("".join((token.text or "").split()), validate=True)
        except binascii.Error as exc:
            raise InvalidSecurity(
                f"the BinarySecurityToken is not an X.509 certificate: {exc}"
            ) from exc

    def changed(self) -> list[str]:
        """The signed elements whose digest no longer matches (to explain a failure)."""
        names = []
        for ref in self.references:
            element = self.targets[ref.uri_id]
            try:
                value = digest(element, ref.digest_method, ref.inclusive_prefixes)
            except etree.C14NError:  # e.g. a relative namespace URI: nothing could sign it
                names.append(f"{_prefixed(element)} (which cannot be canonicalized)")
                continue
            if value != ref.digest_value:
                names.append(_prefixed(element))
        return names


def _one(parent: etree._Element, tag: str, name: str) -> etree._Element:
    found = list(parent.iterchildren(tag))
    if len(found) != 1:
        how = "no" if not found else f"{len(found)}"
        raise InvalidSecurity(f"the wsse:Security header has {how} {name}; it needs exactly one")
    return found[0]


def _prefixed(element: etree._Element) -> str:
    namespace, local = clark(element.tag)
    prefix = "wsa" if namespace in (ns.WSA, ns.WSA_2004) else element.prefix
    return f"{prefix}:{local}" if prefix else local


# -- reading: SignedInfo and its references --------------------------------------------------


def read_signed_info(signature: etree._Element) -> list[Reference]:
    """The References, after refusing any algorithm or transform outside our small set."""
    signed_info = _child(signature, "SignedInfo")
    c14n = _child(signed_info, "CanonicalizationMethod").get("Algorithm")
    if c14n != EXC_C14N:
        raise InvalidSecurity(f"SignedInfo uses canonicalization {c14n}; use {EXC_C14N}")
    method = _child(signed_info, "SignatureMethod").get("Algorithm")
    if method not in SIGNATURE_METHODS:
        raise InvalidSecurity(
            f"the signature method {method} is refused; sign with RSA-SHA256 (or SHA-384/512)"
        )
    elements = list(signed_info.iterchildren(f"{{{DS}}}Reference"))
    if not 0 < len(elements) <= MAX_REFERENCES:
        raise InvalidSecurity(
            f"the ds:Signature has {len(elements)} References; it needs 1 to {MAX_REFERENCES}"
        )
    references = [_read_reference(r) for r in elements]
    # The elements we allow are disjoint subtrees: with each named once, the canonicalizing
    # xmlsec does before the signature value is checked is bounded by the message's size.
    if len({ref.uri_id for ref in references}) != len(references):
        raise InvalidSecurity("the ds:Signature references an element more than once")
    return references


def _read_reference(ref: etree._Element) -> Reference:
    uri = ref.get("URI") or ""
    if not uri.startswith("#") or len(uri) < 2 or "(" in uri:
        raise InvalidSecurity(
            f"a Reference has URI {uri!r}; only '#id' references to a wsu:Id are accepted"
        )
    # One pass over the children; each is taken as find() would (the first of its name).
    transforms: list[etree._Element] = []
    found: dict[str, etree._Element] = {}
    for child in ref:
        if child.tag == _TRANSFORMS:
            transforms += child.iterchildren(_TRANSFORM)
        elif child.tag in _DIGEST_PARTS:
            found.setdefault(child.tag, child)
    algorithms = [t.get("Algorithm") for t in transforms]
    if algorithms != [EXC_C14N]:
        raise InvalidSecurity(
            f"Reference {uri} uses transforms {algorithms}; exactly one, {EXC_C14N}, is accepted"
        )
    inclusive = next(transforms[0].iterchildren(_INCLUSIVE), None)
    prefixes = tuple((inclusive.get("PrefixList") or "").split()) if inclusive is not None else ()
    method, value = (found.get(tag) for tag in _DIGEST_PARTS)
    if method is None or value is None:
        missing = "DigestMethod" if method is None else "DigestValue"
        raise InvalidSecurity(f"ds:Reference has no ds:{missing}")
    algorithm = method.get("Algorithm") or ""
    if algorithm not in DIGEST_METHODS:
        raise InvalidSecurity(f"Reference {uri} uses digest {algorithm}; use SHA-256 or better")
    digest = "".join((value.text or "").split())
    return Reference(uri[1:], DIGEST_METHODS[algorithm], digest, prefixes)


def _child(parent: etree._Element, local: str) -> etree._Element:
    found = next(parent.iterchildren(f"{{{DS}}}{local}"), None)
    if found is None:
        raise InvalidSecurity(f"ds:{clark(parent.tag)[1]} has no ds:{local}")
    return found


def _resolve(root: etree._Element, wanted: set[str]) -> dict[str, etree._Element]:
    """Each wanted id → the one element carrying it. An id on two elements, or also used as
    an xml:id (which XML processors may resolve instead), is the mark of a wrapping attack."""
    found: dict[str, list[etree._Element]] = {i: [] for i in wanted}
    for element in _WITH_AN_ID(root):  # one walk, in C
        for attribute in (ID, _XML_ID):
            value = element.get(attribute)
            if value in found:
                found[value].append(element)
    targets = {}
    for uri_id, elements in found.items():
        if len(elements) != 1:
            raise InvalidSecurity(
                f"the signature references #{uri_id}, which "
                + ("no element carries" if not elements else f"{len(elements)} elements carry")
                + ": each signed element needs one unique wsu:Id"
            )
        if elements[0].get(ID) != uri_id:
            raise InvalidSecurity(f"#{uri_id} names an xml:id; sign elements by their wsu:Id")
        targets[uri_id] = elements[0]
    return targets
