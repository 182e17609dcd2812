"""Signature wrapping and algorithm games against soap/wsse_read.py: moved, copied and duplicated
signed elements, extra Security headers and Timestamps, XPointer and empty URIs, extra
transforms, repeated References, RSA-SHA1. All are InvalidSecurity, named for a person."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from lxml import etree
from wss_support import (
    BODY,
    HEADER,
    HP,
    SECURITY,
    TIMESTAMP,
    TO,
    Keys,
    check,
    duplicate,
    env_of,
    part,
    signed,
    tampered,
)

from dynasoar import ns
from dynasoar.errors import WSSE, InvalidSecurity
from dynasoar.soap.envelope import SoapVersion
from dynasoar.soap.security import TrustStore
from dynasoar.soap.wsse import DS, EXC_C14N, ID

VERSIONS = pytest.mark.parametrize("version", list(SoapVersion), ids=["soap11", "soap12"])


def _forged_body(root: etree._Element) -> etree._Element:
    """Move the signed Body away and put a forged one in its place; return the signed one."""
    body = part(root, BODY)
    root.remove(body)
    forged = etree.SubElement(root, f"{{{env_of(root)}}}Body")
    evil = etree.SubElement(forged, f"{{{HP}}}Deploy")
    etree.SubElement(evil, f"{{{HP}}}name").text = "Evil"
    return body


def _wrap_body_in_security(root: etree._Element) -> None:
    body = _forged_body(root)
    etree.SubElement(part(root, SECURITY), f"{{{WSSE}}}Wrapper").append(body)


def _wrap_body_in_a_header(root: etree._Element) -> None:
    body = _forged_body(root)
    etree.SubElement(part(root, HEADER), "{urn:attacker}Wrapper").append(body)


def _body_as_a_header_block(root: etree._Element) -> None:
    part(root, HEADER).append(_forged_body(root))


def _forged_body_with_the_signed_id(attribute: str) -> Callable[[etree._Element], None]:
    def change(root: etree._Element) -> None:
        body = _forged_body(root)
        part(root, BODY).set(attribute, str(body.get(ID)))
        etree.SubElement(part(root, HEADER), "{urn:attacker}Wrapper").append(body)

    return change


def _wrap_to(root: etree._Element) -> None:
    to = part(root, TO)
    header = part(root, HEADER)
    header.replace(to, etree.Element(f"{{{ns.WSA}}}To"))
    part(root, TO).text = "http://evil.example/"
    etree.SubElement(part(root, SECURITY), "{urn:attacker}Wrapper").append(to)


def _set_reference(attribute: str, value: str) -> Callable[[etree._Element], None]:
    def change(root: etree._Element) -> None:
        ref = next(root.iter(f"{{{DS}}}Reference"))
        if attribute == "URI":
            ref.set("URI", value)
        else:
            transforms = ref.find(f"{{{DS}}}Transforms")
            assert transforms is not None
            etree.SubElement(transforms, f"{{{DS}}}Transform", Algorithm=value)

    return change


def _sha1_method(root: etree._Element) -> None:
    method = next(root.iter(f"{{{DS}}}SignatureMethod"))
    method.set("Algorithm", "http://www.w3.org/2000/09/xmldsig#rsa-sha1")


def _reference_security(root: etree._Element) -> None:
    """Point the Body's Reference at the whole Security header instead."""
    part(root, SECURITY).set(ID, "whole-security")
    uri = "#" + str(part(root, BODY).get(ID))
    next(r for r in root.iter(f"{{{DS}}}Reference") if r.get("URI") == uri).set(
        "URI", "#whole-security"
    )


ENVELOPED = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
WRAPPING = {
    "body-into-security-wrapper": (_wrap_body_in_security, "signature wrapping is refused"),
    "body-into-header-wrapper": (_wrap_body_in_a_header, "signature wrapping is refused"),
    "body-as-header-block": (_body_as_a_header_block, "does not cover the soap:Body"),
    "forged-body-same-wsu-id": (_forged_body_with_the_signed_id(ID), "2 elements carry"),
    "forged-body-same-xml-id": (
        _forged_body_with_the_signed_id(f"{{{ns.XML}}}id"),
        "2 elements carry",
    ),
    "to-into-wrapper": (_wrap_to, "signature wrapping is refused"),
    "two-security-headers": (duplicate(SECURITY), "2 wsse:Security headers"),
    "two-timestamps": (duplicate(TIMESTAMP), "has 2 wsu:Timestamp"),
    "xpointer-uri": (_set_reference("URI", "#xpointer(/)"), "only '#id' references"),
    "empty-uri": (_set_reference("URI", ""), "only '#id' references"),
    "enveloped-transform": (_set_reference("Transform", ENVELOPED), "exactly one, http://"),
    "two-c14n-transforms": (_set_reference("Transform", EXC_C14N), "exactly one, http://"),
    "reference-twice": (
        duplicate(f"{SECURITY}/{{{DS}}}Signature/{{{DS}}}SignedInfo/{{{DS}}}Reference"),
        "more than once",
    ),
    "rsa-sha1": (_sha1_method, "rsa-sha1 is refused"),
    "security-header-signed-whole": (_reference_security, "signature wrapping is refused"),
}


@VERSIONS
@pytest.mark.parametrize("name", WRAPPING)
def test_signature_wrapping_and_other_games_are_refused(
    version: SoapVersion, name: str, sp: Keys, trust: TrustStore
) -> None:
    change, expected = WRAPPING[name]
    with pytest.raises(InvalidSecurity) as caught:
        check(tampered(signed(version, sp), change), trust)
    assert expected in caught.value.reason
