"""The libvirt domain XML of a VM deployment: the template in ``deploy/libvirt/domain.xml``
filled in with lxml, so that no value (paths, names) is ever pasted into XML text."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from lxml import etree

from dynasoar.errors import DeploymentFailed
from dynasoar.paths import SOURCE_ROOT

QEMU_NS = "http://libvirt.org/schemas/domain/qemu/1.0"
DYN_NS = "urn:dynasoar:2006"

Accel = Literal["tcg", "kvm"]


def default_template() -> Path:
    return Path(
        os.environ.get("DYNASOAR_LIBVIRT_TEMPLATE")
        or SOURCE_ROOT / "deploy" / "libvirt" / "domain.xml"
    )


@dataclass(frozen=True)
class DomainSpec:
    """What differs between deployments; the rest is the template's."""

    name: str
    deployment_id: str
    scope: str
    accel: Accel
    memory_mib: int
    vcpus: int
    #: the disk, top first: the deployment's overlay, the package's disk, then the base (if any)
    disk_chain: tuple[Path, ...]
    kernel: Path | None
    initrd: Path | None
    cmdline: str
    #: the serial console's FIFOs, without their .in / .out
    console: Path
    host_port: int
    guest_port: int
    uid: int
    gid: int
    #: the host address the guest's port is forwarded from (where the SP reaches it)
    listen: str = "127.0.0.1"
    #: a copy restored from a snapshot: the snapshot's machine type (the template's otherwise),
    #: its own VM generation ID, and QEMU waiting for the memory state (``-incoming defer``)
    machine: str | None = None
    genid: str | None = None
    incoming: bool = False


def render(spec: DomainSpec, template: Path) -> str:
    try:
        root = etree.parse(str(template), etree.XMLParser(resolve_entities=False)).getroot()
    except (OSError, etree.XMLSyntaxError) as exc:
        raise DeploymentFailed(
            f"the libvirt domain template {template} is unusable: {exc}"
        ) from exc
    try:
        _fill(root, spec)
    except (AttributeError, IndexError) as exc:  # a marked element is missing from the template
        raise DeploymentFailed(
            f"the libvirt domain template {template} lacks an element dynasoar fills in: {exc}"
        ) from exc
    return str(etree.tostring(root, encoding="unicode"))


def _fill(root: etree._Element, spec: DomainSpec) -> None:
    root.set("type", "kvm" if spec.accel == "kvm" else "qemu")
    _one(root, "name").text = spec.name
    meta = _one(root, f"metadata/{{{DYN_NS}}}deployment")
    meta.set("id", spec.deployment_id)
    meta.set("scope", spec.scope)
    meta.set("overlay", str(spec.disk_chain[0]))
    memory = _one(root, "memory")
    memory.set("unit", "MiB")
    memory.text = str(spec.memory_mib)
    _one(root, "vcpu").text = str(spec.vcpus)
    if spec.accel == "kvm":
        for cpu in root.findall("cpu"):
            root.remove(cpu)  # TCG's "maximum" model means nothing to KVM; its default does
    _fill_boot(_one(root, "os"), spec)
    _one(root, "seclabel/label").text = f"+{spec.uid}:+{spec.gid}"
    _fill_disk(_one(root, "devices/disk"), spec.disk_chain)
    _one(root, "devices/serial/source").set("path", str(spec.console))
    args = root.findall(f"{{{QEMU_NS}}}commandline/{{{QEMU_NS}}}arg")
    netdev = next(a for a in args if a.get("value", "").startswith("user,"))
    netdev.set(
        "value",
        f"user,id=n0,restrict=on,hostfwd=tcp:{spec.listen}:{spec.host_port:d}-:{spec.guest_port:d}",
    )
    _fill_restore(root, spec)


def _fill_restore(root: etree._Element, spec: DomainSpec) -> None:
    if spec.machine is not None:
        _one(root, "os/type").set("machine", spec.machine)
    genid = root.find("genid")
    if genid is not None and spec.genid is not None:
        genid.text = spec.genid
    if spec.incoming:
        commandline = _one(root, f"{{{QEMU_NS}}}commandline")
        for value in ("-incoming", "defer"):
            etree.SubElement(commandline, f"{{{QEMU_NS}}}arg", value=value)


def _fill_boot(os_element: etree._Element, spec: DomainSpec) -> None:
    files = {"kernel": spec.kernel, "initrd": spec.initrd}
    for tag, path in files.items():
        element = _one(os_element, tag)
        if path is None:
            os_element.remove(element)
        else:
            element.text = str(path)
    cmdline = _one(os_element, "cmdline")
    if spec.kernel is None:
        os_element.remove(cmdline)  # the disk boots itself
    else:
        cmdline.text = spec.cmdline


def _fill_disk(disk: etree._Element, chain: tuple[Path, ...]) -> None:
    """The whole backing chain, spelled out: libvirt (and QEMU) then open exactly these files
    and never follow the backing paths written in the images, which came with the package."""
    _one(disk, "source").set("file", str(chain[0]))
    nested = etree.Element("backingStore")  # empty: nothing below the last image
    for path in reversed(chain[1:]):
        store = etree.Element("backingStore", type="file")
        etree.SubElement(store, "format", type="qcow2")
        etree.SubElement(store, "source", file=str(path))
        store.append(nested)
        nested = store
    disk.replace(_one(disk, "backingStore"), nested)


def _one(parent: etree._Element, path: str) -> etree._Element:
    found = parent.find(path)
    if found is None:
        raise AttributeError(path)
    return found
