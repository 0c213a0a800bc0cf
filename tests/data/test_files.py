import hashlib

import pytest

from iclr22.data import DataFileError, checked_file, package_file, sha256_of


def test_checked_file_accepts_matching_sha(tmp_path):
    path = tmp_path / "d.txt"
    path.write_bytes(b"hello")
    digest = hashlib.sha256(b"hello").hexdigest()
    assert sha256_of(path) == digest
    assert checked_file(path, digest, install_hint="apt-get install x") == path


def test_missing_file_says_how_to_install(tmp_path):
    with pytest.raises(DataFileError, match="apt-get install wordnet-base"):
        checked_file(tmp_path / "absent", "0" * 64, install_hint="apt-get install wordnet-base")


def test_corrupt_file_is_reported(tmp_path):
    path = tmp_path / "d.txt"
    path.write_bytes(b"hello")
    with pytest.raises(DataFileError, match="corrupt"):
        checked_file(path, hashlib.sha256(b"other").hexdigest(), install_hint="pip install x")


def test_package_file_reads_installed_package_and_rejects_unknown_ones():
    digest = sha256_of(__import__("iclr22").__file__)
    init = package_file("iclr22", "__init__.py", sha256=digest, install_hint="pip install -e .")
    assert init.name == "__init__.py"
    with pytest.raises(DataFileError, match="not installed"):
        package_file("no_such_package_xyz", "f", sha256="0" * 64, install_hint="pip install it")
