"""Fixtures of the knowledge tests: course material on disk, a store, the OpenAI stand-in, a Chroma server."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from bench.processes import free_port
from bot.config import knowledge_settings, load_settings
from knowledge.embeddings import default_tokenizer_dir
from knowledge.settings import KnowledgeSettings
from standins.openai import MODEL, OpenAIStandIn
from tests.conftest import missing
from tests.support import openai  # noqa: F401 (the fixture)

PHOTOSYNTHESIS = """# Photosynthesis

Plants make their food from light.

## Light reactions

The light reactions take place in the thylakoid membranes. Chlorophyll absorbs light energy and splits water,
releasing oxygen as a by-product.

## Calvin cycle

The Calvin cycle takes place in the stroma. It fixes carbon dioxide into sugar using ATP and NADPH.
"""

RESPIRATION = """# Cellular respiration

Cellular respiration happens in the mitochondria. It breaks glucose down and stores the energy as ATP.
Photosynthesis and respiration differ: photosynthesis stores energy in sugar, respiration releases it.
"""

VOLCANOES = """# Volcanoes

Magma that reaches the surface is called lava. Most volcanoes form where tectonic plates meet.
"""


@pytest.fixture
def course_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "biology"
    folder.mkdir()
    (folder / "photosynthesis.md").write_text(PHOTOSYNTHESIS)
    (folder / "respiration.md").write_text(RESPIRATION)
    return folder


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """DATA_DIR of the test: the knowledge store is its `chroma` folder."""
    return tmp_path / "var"


@pytest.fixture
def offline_settings(data_dir: Path) -> KnowledgeSettings:
    """The defaults (offline embeddings, extractive answers, the store on disk), as the bot hands them to knowledge."""
    if not (default_tokenizer_dir() / "tokenizer.json").is_file():
        missing("the offline model's tokenizer is not installed: run `make install`")
    return knowledge_settings(load_settings(_env_file=None, data_dir=data_dir, log_format="text"))


@pytest.fixture
def model_settings(offline_settings: KnowledgeSettings, openai: OpenAIStandIn) -> KnowledgeSettings:
    """Offline embeddings, answers from the stand-in's chat model."""
    return replace(offline_settings, openai_base_url=openai.base_url, openai_api_key="sk-test", openai_model=MODEL)


@pytest.fixture(scope="session")
def chroma_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    """A real Chroma server (`chroma run`, shipped with the chromadb package) on a free local port."""
    chroma = shutil.which("chroma") or str(Path(__file__).resolve().parents[2] / ".venv" / "bin" / "chroma")
    if not Path(chroma).exists():
        missing("the `chroma` command (chromadb package) is not installed")
    port = free_port()
    path = tmp_path_factory.mktemp("chroma-server")
    log = open(path / "server.log", "wb")  # noqa: SIM115 (the server writes to it until the finally below closes it)
    process = subprocess.Popen(
        [chroma, "run", "--path", str(path / "data"), "--host", "127.0.0.1", "--port", str(port)],
        stdout=log, stderr=subprocess.STDOUT, env={"ANONYMIZED_TELEMETRY": "False", "PATH": "/usr/bin:/bin"},
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/api/v2/heartbeat", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the Chroma server did not start: {(path / 'server.log').read_text()[-2000:]}")
            time.sleep(0.2)
        yield "127.0.0.1", port
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
