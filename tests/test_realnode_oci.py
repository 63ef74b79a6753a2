"""hack/realnode/oci.py: its archives are valid OCI image layouts, byte for byte stable."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import Any

from hack.realnode.oci import CONTAINERD_NAME, ImageFile, ImageSpec, write_archive

SPEC = ImageSpec(
    name="localhost/ec2-terminal/test:local",
    files=(ImageFile("/bin/tool", b"#!/bin/true\n"), ImageFile("/etc/conf", b"x=1\n", 0o644)),
    entrypoint=("/bin/tool", "serve"),
    user="65532:65532",
    env=("PORT=8080",),
)


def read_archive(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        return {
            m.name: tar.extractfile(m).read()  # type: ignore[union-attr]
            for m in tar.getmembers()
            if m.isfile()
        }


def blob(entries: dict[str, bytes], digest: str) -> bytes:
    data = entries[f"blobs/sha256/{digest.removeprefix('sha256:')}"]
    assert "sha256:" + hashlib.sha256(data).hexdigest() == digest
    return data


def test_archive_is_an_oci_layout_whose_digests_match(tmp_path: Path) -> None:
    write_archive(SPEC, tmp_path / "a.tar")
    entries = read_archive(tmp_path / "a.tar")
    assert json.loads(entries["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
    index: dict[str, Any] = json.loads(entries["index.json"])
    [descriptor] = index["manifests"]
    assert descriptor["annotations"][CONTAINERD_NAME] == SPEC.name
    manifest = json.loads(blob(entries, descriptor["digest"]))
    config = json.loads(blob(entries, manifest["config"]["digest"]))
    assert config["config"]["Entrypoint"] == ["/bin/tool", "serve"]
    assert config["config"]["User"] == "65532:65532"
    assert config["config"]["Env"] == ["PORT=8080"]
    [layer_descriptor] = manifest["layers"]
    layer = blob(entries, layer_descriptor["digest"])
    # An uncompressed layer: its digest is also the config's diff_id.
    assert config["rootfs"]["diff_ids"] == [layer_descriptor["digest"]]
    with tarfile.open(fileobj=io.BytesIO(layer)) as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert set(members) == {"bin", "bin/tool", "etc", "etc/conf"}
        assert members["bin"].isdir()
        assert {m.uid for m in members.values()} == {0}
        assert members["bin/tool"].mode == 0o755
        assert members["etc/conf"].mode == 0o644
        assert tar.extractfile("bin/tool").read() == b"#!/bin/true\n"  # type: ignore[union-attr]


def test_same_inputs_give_the_same_archive(tmp_path: Path) -> None:
    write_archive(SPEC, tmp_path / "a.tar")
    write_archive(SPEC, tmp_path / "b.tar")
    assert (tmp_path / "a.tar").read_bytes() == (tmp_path / "b.tar").read_bytes()
