"""One-layer OCI image archives made from local files, in the layout `podman save` writes."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER = "application/vnd.oci.image.layer.v1.tar"
MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
# containerd names an imported image after this annotation (the OCI one holds only the tag).
CONTAINERD_NAME = "io.containerd.image.name"
OCI_REF_NAME = "org.opencontainers.image.ref.name"


@dataclass(frozen=True)
class ImageFile:
    """A regular file of the image's single layer."""

    path: str
    content: bytes
    mode: int = 0o755


@dataclass(frozen=True)
class ImageSpec:
    """What an image holds and how it runs."""

    name: str
    files: tuple[ImageFile, ...]
    entrypoint: tuple[str, ...]
    user: str = "65532:65532"
    env: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)


def _tar_info(name: str, size: int, mode: int, kind: bytes) -> tarfile.TarInfo:
    # Fixed owner and time: the same inputs give the same layer digest.
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.type, info.mtime = size, mode, kind, 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def layer_tar(files: tuple[ImageFile, ...]) -> bytes:
    """An uncompressed layer: the files and every parent directory, in a stable order."""
    buf = io.BytesIO()
    dirs: set[str] = set()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for f in sorted(files, key=lambda f: f.path):
            parts = f.path.strip("/").split("/")
            for i in range(1, len(parts)):
                d = "/".join(parts[:i])
                if d not in dirs:
                    dirs.add(d)
                    tar.addfile(_tar_info(d + "/", 0, 0o755, tarfile.DIRTYPE))
            tar.addfile(
                _tar_info("/".join(parts), len(f.content), f.mode, tarfile.REGTYPE),
                io.BytesIO(f.content),
            )
    return buf.getvalue()


def _blob(data: bytes) -> tuple[str, bytes]:
    return "sha256:" + hashlib.sha256(data).hexdigest(), data


def _json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def image_blobs(spec: ImageSpec) -> tuple[dict[str, bytes], dict[str, Any]]:
    """The blobs by digest and the index that names the image's manifest."""
    layer_digest, layer = _blob(layer_tar(spec.files))
    config: dict[str, Any] = {
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Entrypoint": list(spec.entrypoint),
            "User": spec.user,
            "Env": list(spec.env),
            "Labels": dict(spec.labels),
        },
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        "history": [{"created_by": "hack/realnode/oci.py"}],
    }
    config_digest, config_blob = _blob(_json(config))
    manifest = {
        "schemaVersion": 2,
        "mediaType": MEDIA_MANIFEST,
        "config": {"mediaType": MEDIA_CONFIG, "digest": config_digest, "size": len(config_blob)},
        "layers": [{"mediaType": MEDIA_LAYER, "digest": layer_digest, "size": len(layer)}],
    }
    manifest_digest, manifest_blob = _blob(_json(manifest))
    index = {
        "schemaVersion": 2,
        "mediaType": MEDIA_INDEX,
        "manifests": [
            {
                "mediaType": MEDIA_MANIFEST,
                "digest": manifest_digest,
                "size": len(manifest_blob),
                "platform": {"architecture": "amd64", "os": "linux"},
                "annotations": {
                    CONTAINERD_NAME: spec.name,
                    OCI_REF_NAME: spec.name.rsplit(":", 1)[-1],
                },
            }
        ],
    }
    blobs = {layer_digest: layer, config_digest: config_blob, manifest_digest: manifest_blob}
    return blobs, index


def write_archive(spec: ImageSpec, out: Path) -> None:
    """Writes SPEC as an OCI archive (oci-layout, index.json, blobs/sha256/*) to OUT."""
    blobs, index = image_blobs(spec)
    tmp = out.with_suffix(out.suffix + ".tmp")
    with tarfile.open(tmp, mode="w", format=tarfile.PAX_FORMAT) as tar:
        entries = {"oci-layout": _json({"imageLayoutVersion": "1.0.0"}), "index.json": _json(index)}
        entries.update({f"blobs/sha256/{d.removeprefix('sha256:')}": b for d, b in blobs.items()})
        tar.addfile(_tar_info("blobs/", 0, 0o755, tarfile.DIRTYPE))
        tar.addfile(_tar_info("blobs/sha256/", 0, 0o755, tarfile.DIRTYPE))
        for name, data in entries.items():
            tar.addfile(_tar_info(name, len(data), 0o644, tarfile.REGTYPE), io.BytesIO(data))
    tmp.replace(out)
