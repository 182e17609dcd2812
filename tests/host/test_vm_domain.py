"""The libvirt domain XML a VM deployment gets, the KVM verdict memory and the package-disk
rules: pure functions and small files, no libvirt needed."""

from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree

from dynasoar.errors import InvalidPackage
from dynasoar.host.backends.kvm_probe import KvmVerdicts
from dynasoar.host.backends.vm_disk import DiskInfo, check_base, check_package_disk
from dynasoar.host.backends.vm_domain import QEMU_NS, DomainSpec, default_template, render

ODD = Path('/data/it\'s <a> "dir" & more')


def spec(**changes: object) -> DomainSpec:
    values: dict[str, object] = dict(
        name="dynasoar-abc-123",
        deployment_id="123",
        scope="abc",
        accel="tcg",
        memory_mib=96,
        vcpus=2,
        disk_chain=(ODD / "overlay.qcow2", ODD / "pkg" / "disk.qcow2", Path("/cache/base")),
        kernel=ODD / "pkg" / "vmlinux",
        initrd=ODD / "pkg" / "initrd.img",
        cmdline="console=ttyS0 quiet",
        console=ODD / "console",
        host_port=40123,
        guest_port=8000,
        uid=0,
        gid=0,
    )
    values.update(changes)
    return DomainSpec(**values)  # type: ignore[arg-type]


def rendered(**changes: object) -> etree._Element:
    return etree.fromstring(render(spec(**changes), default_template()).encode())


def test_values_land_in_their_elements_escaped_by_the_serializer() -> None:
    domain = rendered()

    assert domain.get("type") == "qemu"
    assert domain.findtext("name") == "dynasoar-abc-123"
    assert (domain.findtext("memory"), domain.find("memory").get("unit")) == ("96", "MiB")
    assert domain.findtext("vcpu") == "2"
    assert domain.findtext("os/kernel") == str(ODD / "pkg" / "vmlinux")
    assert domain.findtext("os/cmdline") == "console=ttyS0 quiet"
    assert domain.find("devices/serial").get("type") == "pipe"
    assert domain.find("devices/serial/source").get("path") == str(ODD / "console")
    assert domain.findtext("seclabel/label") == "+0:+0"
    assert domain.find("cpu").get("mode") == "maximum"


def test_the_whole_backing_chain_is_spelled_out() -> None:
    disk = rendered().find("devices/disk")

    assert disk.find("source").get("file") == str(ODD / "overlay.qcow2")
    chain, store = [], disk.find("backingStore")
    while store is not None and store.get("type") == "file":
        assert store.find("format").get("type") == "qcow2"
        chain.append(store.find("source").get("file"))
        store = store.find("backingStore")
    assert chain == [str(ODD / "pkg" / "disk.qcow2"), "/cache/base"]
    assert store is not None and len(store) == 0  # the terminator: nothing further is opened
    assert disk.find("target").get("dev") == "vda"


def test_the_port_forward_is_loopback_only_and_the_guest_isolated() -> None:
    found = rendered().iterfind(f"{{{QEMU_NS}}}commandline/{{{QEMU_NS}}}arg")
    args = [a.get("value") for a in found]

    assert "user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:40123-:8000" in args
    assert any(a.startswith("virtio-net-pci,netdev=n0,bus=pci.0,addr=0x10") for a in args)


def test_kvm_switches_the_domain_type_and_drops_the_tcg_cpu() -> None:
    domain = rendered(accel="kvm")

    assert domain.get("type") == "kvm"
    assert domain.find("cpu") is None


def test_without_a_kernel_the_disk_boots_itself() -> None:
    os_element = rendered(kernel=None, initrd=None).find("os")

    assert [child.tag for child in os_element] == ["type", "boot"]


def test_kvm_verdicts_hold_for_one_machine_boot(tmp_path: Path) -> None:
    boot_id = tmp_path / "boot_id"
    boot_id.write_text("boot-1\n")
    verdicts = KvmVerdicts(tmp_path / "kvm.json", boot_id)

    assert verdicts.get() is None
    verdicts.put(False)
    assert verdicts.get() is False
    assert KvmVerdicts(tmp_path / "kvm.json", boot_id).get() is False  # another HP process
    boot_id.write_text("boot-2\n")
    assert verdicts.get() is None  # rebooted: probe again
    (tmp_path / "kvm.json").write_text("{not json")
    assert verdicts.get() is None


def disk(backing: str | None = None, data_file: str | None = None) -> DiskInfo:
    return DiskInfo(Path("disk.qcow2"), 1 << 20, backing, data_file)


@pytest.mark.parametrize(
    ("info", "has_base", "refusal"),
    [
        (disk(), False, None),
        (disk(backing="../base.qcow2"), True, None),
        (disk(backing="/etc/shadow"), False, "names no \\[vm\\] base"),
        (disk(), True, "not an overlay"),
        (disk(data_file="/dev/sda"), False, "external qcow2 data file"),
    ],
    ids=["standalone", "overlay+base", "backing-without-base", "base-not-overlay", "data-file"],
)
def test_package_disk_rules(info: DiskInfo, has_base: bool, refusal: str | None) -> None:
    if refusal is None:
        check_package_disk(info, has_base=has_base)
    else:
        with pytest.raises(InvalidPackage, match=refusal):
            check_package_disk(info, has_base=has_base)


def test_a_base_image_must_stand_alone() -> None:
    check_base(disk())
    with pytest.raises(InvalidPackage):
        check_base(disk(backing="other.qcow2"))
