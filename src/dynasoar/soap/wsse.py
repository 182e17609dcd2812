"""The layout of a signed SOAP envelope (WS-Security 1.0/1.1, X.509 token profile), pure lxml:
its names, and writing the wsse:Security parts with the References' digests. Reading one back
is :mod:`dynasoar.soap.wsse_read`; the key's part is in :mod:`dynasoar.soap.security`.
"""

from __future__ import annotations

import base64
import copy
import datetime
import hashlib
import os

from lxml import etree

from dynasoar import ns
from dynasoar.errors import WSSE
from dynasoar.soap.envelope import SoapVersion, clark

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
TOKEN = f"{{{WSSE}}}BinarySecurityToken"

# wsu:Id goes on elements that do not declare wsu; make lxml call it "wsu", not "ns0".
etree.register_namespace("wsu", WSU)


def version_of(root: etree._Element) -> SoapVersion:
    return SoapVersion.from_namespace(clark(root.tag)[0])


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
    token = etree.SubElement(security, TOKEN, ValueType=X509V3, EncodingType=BASE64_BINARY)
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
    references = list(info.iterchildren(f"{{{DS}}}Reference"))
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
