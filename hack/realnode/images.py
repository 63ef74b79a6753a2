"""The real node's own images: pause (the sandbox) and hello (the tests' workload)."""

from __future__ import annotations

import sys
from pathlib import Path

from hack.realnode.oci import ImageFile, ImageSpec, write_archive

PAUSE_IMAGE = "localhost/ec2-terminal/pause:local"
HELLO_IMAGE = "localhost/ec2-terminal/hello:local"
# Archive file names in the images directory hack/realnode/build fills.
ARCHIVES = {PAUSE_IMAGE: "pause.oci.tar", HELLO_IMAGE: "hello.oci.tar"}


def specs(binaries: Path) -> list[ImageSpec]:
    """Each image: one static binary at the root, run as a non-root user."""
    return [
        # 65535, as Kubernetes' own pause image.
        ImageSpec(
            name=PAUSE_IMAGE,
            files=(ImageFile("/pause", (binaries / "pause").read_bytes()),),
            entrypoint=("/pause",),
            user="65535:65535",
        ),
        ImageSpec(
            name=HELLO_IMAGE,
            files=(ImageFile("/hello", (binaries / "hello").read_bytes()),),
            entrypoint=("/hello",),
            user="65532:65532",
            env=("PORT=8080",),
        ),
    ]


def main(argv: list[str]) -> int:
    """images.py BINARIES OUT: packs BINARIES/{pause,hello} into OUT/*.oci.tar."""
    binaries, out = Path(argv[0]), Path(argv[1])
    for spec in specs(binaries):
        write_archive(spec, out / ARCHIVES[spec.name])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
