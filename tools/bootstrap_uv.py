"""Install uv from PyPI into a directory, with nothing but Python's standard library.

`make setup` runs this when uv is not on PATH: no root, no pip, no venv module needed (Debian's
Python has neither without extra packages). It asks the package index's simple API (PEP 691,
JSON) for the pinned uv release's files,
takes the wheel built for this machine, checks the SHA-256 PyPI publishes for it, and puts the
`uv` binary the wheel carries in ``<target>/bin``.

    python3 tools/bootstrap_uv.py .local/uv    # then .local/uv/bin/uv
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import stat
import sys
import urllib.request
import zipfile
from pathlib import Path

UV_VERSION = "0.13.9"
INDEX = os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple").rstrip("/")
ARCHITECTURES = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}


def wheel_for_this_machine(files: list[dict[str, object]]) -> dict[str, object]:
    """The release's Linux wheel for this CPU (glibc first, musl otherwise)."""
    machine = ARCHITECTURES.get(platform.machine().lower())
    if sys.platform != "linux" or machine is None:
        raise SystemExit(
            f"bootstrap_uv: no uv wheel chosen for {sys.platform}/{platform.machine()}; "
            "install uv yourself: https://docs.astral.sh/uv/"
        )
    wheels = [
        f
        for f in files
        if str(f["filename"]).startswith(f"uv-{UV_VERSION}-")
        and str(f["filename"]).endswith(".whl")
    ]
    for libc in ("manylinux", "musllinux"):
        for wheel in wheels:
            name = str(wheel["filename"])
            if libc in name and name.removesuffix(".whl").endswith(machine):
                return wheel
    raise SystemExit(f"bootstrap_uv: uv {UV_VERSION} has no Linux wheel for {machine}")


def install(target: Path) -> Path:
    request = urllib.request.Request(  # noqa: S310 - the index's https URL
        f"{INDEX}/uv/", headers={"Accept": "application/vnd.pypi.simple.v1+json"}
    )
    with urllib.request.urlopen(request, timeout=60) as answer:  # noqa: S310 - https index
        wheel = wheel_for_this_machine(json.load(answer)["files"])
    with urllib.request.urlopen(str(wheel["url"]), timeout=300) as answer:  # noqa: S310
        content = answer.read()
    expected = dict(wheel["hashes"])["sha256"]  # type: ignore[call-overload]
    digest = hashlib.sha256(content).hexdigest()
    if digest != expected:
        raise SystemExit(f"bootstrap_uv: {wheel['filename']} has SHA-256 {digest}, not {expected}")
    binary = target / "bin" / "uv"
    binary.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        member = next(n for n in archive.namelist() if n.endswith(".data/scripts/uv"))
        partial = binary.with_suffix(".partial")
        partial.write_bytes(archive.read(member))
    partial.chmod(partial.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    partial.replace(binary)
    return binary


def main() -> None:
    target = Path(sys.argv[1] if len(sys.argv) > 1 else ".local/uv")
    print(f"uv is not installed: installing uv {UV_VERSION} from PyPI into {target}")
    print(f"installed {install(target)}")


if __name__ == "__main__":
    main()
