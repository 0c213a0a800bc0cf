"""Install the Debian packages listed in a file, if any is missing (needs root or sudo)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys


def missing(packages: list[str]) -> list[str]:
    """Packages that dpkg does not report as installed."""
    absent = []
    for name in packages:
        result = subprocess.run(["dpkg-query", "-W", "-f=${Status}", name],
                                capture_output=True, text=True)
        if "install ok installed" not in result.stdout:
            absent.append(name)
    return absent


def main(listing: str) -> int:
    with open(listing, encoding="utf-8") as handle:
        packages = [ln.strip() for ln in handle if ln.strip() and not ln.startswith("#")]
    if shutil.which("dpkg-query") is None:
        print(f"not a Debian system: install {' '.join(packages)} by hand", file=sys.stderr)
        return 0
    todo = missing(packages)
    if not todo:
        return 0
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run([*sudo, "apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run([*sudo, "apt-get", "install", "-y", "-qq", *todo], check=True, env=env)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "apt-packages.txt"))
