"""The layout of a signed SOAP envelope (WS-Security 1.0/1.1, X.509 token profile), pure lxml:
writing the wsse:Security parts, and reading one back with every signed reference resolved to
the one element it may mean. The cryptography is in :mod:`dynasoar.soap.security`.

Signature wrapping is stopped here: a Reference must name, by ``wsu:Id``, exactly one element
of the document, and that element must be the envelope's Body, the Timestamp of its one
Security header, a header block of its own, or a token; the Body, the Timestamp and every
WS-Addressing header block must all be covered. So the elements the application reads next
are the ones whose digests xmlsec checks.
"""

from __future__ import annotations

import base64
import binascii
import copy
import datetime
import hashlib
import os
from dataclasses import dataclass

from cryptography import x509
from lxml import etree

from dynasoar import ns
from dynasoar.errors import WSSE, InvalidSecurity
from dynasoar.soap.envelope import SoapVersion

WSU = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
DS = "http://www.w3.org/2000/09/xmldsig#"
X509V3 = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-x509-token-profile-1.0#X509v3"
BASE64_BINARY = (
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-soap-message-security-1.0#Base64Binary"
)
EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"
SIGNATURE_METHODS = frozenset(
    {
        RSA_SHA256,
        "http://www.w3.org/2001/04/xmldsig-more#rsa-sha384",
        "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512",
    }
)
#: Digest algorithm URI → hashlib name. SHA-1 is refused.
DIGEST_METHODS = {
    SHA256: "sha256",
    "http://www.w3.org/2001/04/xmldsig-more#sha384": "sha384",
    "http://www.w3.org/2001/04/xmlenc#sha512": "sha512",
}
#: More than a signer of Body, Timestamp and addressing headers ever needs.
MAX_REFERENCES = 32
ID = f"{{{WSU}}}Id"
SECURITY = f"{{{WSSE}}}Security"
_XML_ID = f"{{{ns.XML}}}id"
_TOKEN = f"{{{WSSE}}}BinarySecurityToken"

# wsu:Id goes on elements that do not declare wsu; make lxml call it "wsu", not "ns0".
etree.register_namespace("wsu", WSU)


def version_of(root: etree._Element) -> SoapVersion:
    return SoapVersion.from_namespace(etree.QName(root).namespace or "")


# -- writing ------------------------------------------------------------------------------


def xsd_time(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def add_timestamp(security: etree._Element, now: datetime.datetime, ttl: float) -> etree._Element:
    timestamp = etree.SubElement(security, f"{{{WSU}}}Timestamp")
    timestamp.set(ID, f"TS-{_unique()}")
    etree.SubElement(timestamp, f"{{{WSU}}}Created").text = xsd_time(now)
    expires = now + datetime.timedelta(seconds=ttl)
    etree.SubElement(timestamp, f"{{{WSU}}}Expires").text = xsd_time(expires)
    return timestamp


def add_token(security: etree._Element, certificate_der: bytes) -> str:
    """Append an X509v3 BinarySecurityToken; return its wsu:Id."""
    token = etree.SubElement(security, _TOKEN, ValueType=X509V3, EncodingType=BASE64_BINARY)
    token_id = f"X509-{_unique()}"
    token.set(ID, token_id)
    token.text = base64.b64encode(certificate_der).decode("ascii")
    return token_id


def add_signature_template(
    security: etree._Element, ids: list[str], token_id: str
) -> etree._Element:
    """Append the ds:Signature to fill in (DigestValues, SignatureValue): exclusive c14n,
    RSA-SHA256, a SHA-256 Reference per id, KeyInfo pointing to the token.

    Built with lxml rather than xmlsec's template helpers: their nodes are invisible to
    lxml's find() until the tree is reparsed, and the signed tree should be an ordinary one.
    """
    signature = etree.SubElement(security, f"{{{DS}}}Signature", nsmap={"ds": DS})
    info = etree.SubElement(signature, f"{{{DS}}}SignedInfo")
    etree.SubElement(info, f"{{{DS}}}CanonicalizationMethod", Algorithm=EXC_C14N)
    etree.SubElement(info, f"{{{DS}}}SignatureMethod", Algorithm=RSA_SHA256)
    first = etree.SubElement(info, f"{{{DS}}}Reference")
    transforms = etree.SubElement(first, f"{{{DS}}}Transforms")
    etree.SubElement(transforms, f"{{{DS}}}Transform", Algorithm=EXC_C14N)
    etree.SubElement(first, f"{{{DS}}}DigestMethod", Algorithm=SHA256)
    etree.SubElement(first, f"{{{DS}}}DigestValue")
    for uri_id in ids[1:]:  # copies of the first, in C: half the cost of building each
        reference = copy.deepcopy(first)
        reference.set("URI", "#" + uri_id)
        info.append(reference)
    first.set("URI", "#" + ids[0])
    etree.SubElement(signature, f"{{{DS}}}SignatureValue")
    key_info = etree.SubElement(signature, f"{{{DS}}}KeyInfo")
    token_reference = etree.SubElement(key_info, f"{{{WSSE}}}SecurityTokenReference")
    etree.SubElement(token_reference, f"{{{WSSE}}}Reference", URI="#" + token_id, ValueType=X509V3)
    return signature


def fill_digests(signature: etree._Element, targets: list[etree._Element]) -> bytes:
    """Set each Reference's DigestValue (the template's, in ``targets``' order) to its target's
    SHA-256 after exclusive c14n, as xmlsec computes it for a ``#id`` Reference; return the
    exclusive c14n of the SignedInfo, the bytes the SignatureValue signs.

    lxml canonicalizes an element as the apex of its own document subset, with the namespaces
    in scope from its ancestors, which is what exclusive c14n of a same-document subtree means
    (no inherited xml:* attributes, only visibly utilized namespaces), so the digests are
    xmlsec's. The tests sign both ways and compare the messages byte for byte.
    """
    info = signature[0]
    references = info.findall(f"{{{DS}}}Reference")
    if len(references) != len(targets):
        raise ValueError("the signature template and its targets do not match")
    for reference, target in zip(references, targets, strict=True):
        reference[2].text = digest(target, "sha256", ())
    return _exclusive_c14n(info, ())


def set_signature_value(signature: etree._Element, value: bytes) -> None:
    """The SignatureValue in Base64, in lines of 64 characters as xmlsec writes it."""
    text = base64.b64encode(value).decode("ascii")
    signature[1].text = "\n".join(text[i : i + 64] for i in range(0, len(text), 64))


def digest(element: etree._Element, method: str, inclusive_prefixes: tuple[str, ...]) -> str:
    """Base64 of the hashlib ``method`` digest of the element's exclusive c14n (no comments);
    raises etree.C14NError when canonical XML refuses it (a relative namespace URI)."""
    return base64.b64encode(
        hashlib.new(method, _exclusive_c14n(element, inclusive_prefixes)).digest()
    ).decode("ascii")


def _exclusive_c14n(element: etree._Element, inclusive_prefixes: tuple[str, ...]) -> bytes:
    c14n: bytes = etree.tostring(
        element,
        method="c14n",
        exclusive=True,
        with_comments=False,
        inclusive_ns_prefixes=list(inclusive_prefixes) or None,
    )
    return c14n


def _unique() -> str:
    """128 random bits for a wsu:Id (os.urandom: a uuid4's randomness without its object)."""
    return os.urandom(16).hex()


def ensure_id(element: etree._Element) -> str:
    value: str | None = element.get(ID)
    if not value:
        value = f"id-{_unique()}"
        element.set(ID, value)
    return value


def addressing_blocks(header: etree._Element | None) -> list[etree._Element]:
    """Header blocks a signature must cover: WS-Addressing's own (either namespace) and the
    reference parameters echoed as headers, which steer routing too."""
    if header is None:
        return []
    wsa_tags = (f"{{{ns.WSA}}}", f"{{{ns.WSA_2004}}}")
    marks = (f"{{{ns.WSA}}}IsReferenceParameter", f"{{{ns.WSA_2004}}}IsReferenceParameter")
    return [
        block
        for block in header
        if isinstance(block.tag, str)
        and (block.tag.startswith(wsa_tags) or any(_true(block.get(m)) for m in marks))
    ]


def _true(value: str | None) -> bool:
    return (value or "").strip() in ("true", "1")


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
        bodies = root.findall(f"{{{env}}}Body")
        if len(bodies) != 1:
            raise InvalidSecurity(f"the envelope has {len(bodies)} Body elements, not one")
        header = root.find(f"{{{env}}}Header")
        blocks = header.findall(SECURITY) if header is not None else []
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
        tokens = self.security.findall(_TOKEN)
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

    def certificate(self) -> x509.Certificate:
        """The X.509 certificate the signature's KeyInfo points to, in this Security header.

        Read here, never resolved by xmlsec, so an id elsewhere cannot stand in for it.
        """
        reference = self.signature.find(
            f"{{{DS}}}KeyInfo/{{{WSSE}}}SecurityTokenReference/{{{WSSE}}}Reference"
        )
        uri = (reference.get("URI") or "") if reference is not None else ""
        tokens = [
            t for t in self.security.findall(_TOKEN) if uri[:1] == "#" and t.get(ID) == uri[1:]
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
            der = base64.b64decode("".join((token.text or "").split()), validate=True)
            return x509.load_der_x509_certificate(der)
        except (binascii.Error, ValueError) as exc:
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
    found = parent.findall(tag)
    if len(found) != 1:
        how = "no" if not found else f"{len(found)}"
        raise InvalidSecurity(f"the wsse:Security header has {how} {name}; it needs exactly one")
    return found[0]


def _prefixed(element: etree._Element) -> str:
    qname = etree.QName(element)
    prefix = "wsa" if qname.namespace in (ns.WSA, ns.WSA_2004) else element.prefix
    return f"{prefix}:{qname.localname}" if prefix else str(qname.localname)


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
    elements = signed_info.findall(f"{{{DS}}}Reference")
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
    transforms = ref.findall(f"{{{DS}}}Transforms/{{{DS}}}Transform")
    algorithms = [t.get("Algorithm") for t in transforms]
    if algorithms != [EXC_C14N]:
        raise InvalidSecurity(
            f"Reference {uri} uses transforms {algorithms}; exactly one, {EXC_C14N}, is accepted"
        )
    inclusive = transforms[0].find(f"{{{EXC_C14N}}}InclusiveNamespaces")
    prefixes = tuple((inclusive.get("PrefixList") or "").split()) if inclusive is not None else ()
    algorithm = _child(ref, "DigestMethod").get("Algorithm") or ""
    if algorithm not in DIGEST_METHODS:
        raise InvalidSecurity(f"Reference {uri} uses digest {algorithm}; use SHA-256 or better")
    digest = "".join((_child(ref, "DigestValue").text or "").split())
    return Reference(uri[1:], DIGEST_METHODS[algorithm], digest, prefixes)


def _child(parent: etree._Element, local: str) -> etree._Element:
    found = parent.find(f"{{{DS}}}{local}")
    if found is None:
        raise InvalidSecurity(f"ds:{etree.QName(parent).localname} has no ds:{local}")
    return found


def _resolve(root: etree._Element, wanted: set[str]) -> dict[str, etree._Element]:
    """Each wanted id → the one element carrying it. An id on two elements, or also used as
    an xml:id (which XML processors may resolve instead), is the mark of a wrapping attack."""
    found: dict[str, list[etree._Element]] = {i: [] for i in wanted}
    for element in root.iter():
        if not isinstance(element.tag, str):
            continue
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
