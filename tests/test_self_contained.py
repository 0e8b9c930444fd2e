"""A clone of the repository is all `make test` and `make run` have: no file of the project names a place outside it
(a folder beside the checkout, where the evaluation's dataset and the platforms' payloads first lay)."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# a folder beside the checkout, however a path to it is written (up one folder and into it, Path("..") / it, four
# levels up); its name is put together here, so that this file does not name the place it refuses
BESIDE = "sha" + "red"
OUTSIDE = ("../" + BESIDE, f'"{BESIDE}" /', f'/ "{BESIDE}"', f"'{BESIDE}' /", f"/ '{BESIDE}'", "parents[3]",
           "parents[4]", "os.pardir")


def test_no_file_of_the_project_reads_from_beside_the_checkout():
    files = subprocess.run(["git", "ls-files", "*.py", "*.md", "Makefile", "*.toml", "*.yml", ".ci/*"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.split()
    found = [(name, mark) for name in files if name != "tests/test_self_contained.py"
             for mark in OUTSIDE if mark in (ROOT / name).read_text(encoding="utf-8", errors="replace")]
    assert found == [], found
