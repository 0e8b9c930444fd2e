"""The Chroma store of course chunks: on disk by default (CHROMA_PATH), or a Chroma server (CHROMA_HOST/CHROMA_PORT).

Each course's chunks (vectors, text, metadata) live in a collection of their own, and `<CHROMA_COLLECTION>_courses`
holds one small record per course whose `revision` changes on every ingest that changes the course, so each process
knows when its keyword index of that course is stale. Beside each course's collection, `<collection>-sentences`
holds a vector for every sentence of every chunk (ids `<chunk id>:<n>`), which the ranking reads for the few
passages it weighs; it is never searched by vector. Every collection records the embedding model it was built
with; opening the store with another model raises `EmbeddingModelMismatch` instead of mixing vectors that cannot be
compared. Chroma's telemetry is off.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from knowledge.chunking import Chunk, indexed_text
from knowledge.embeddings import LessonbotEmbeddingFunction, TextEmbedder, make_embedder

if TYPE_CHECKING:
    from chromadb.api import ClientAPI
    from chromadb.api.models.Collection import Collection
    from chromadb.api.types import Where
    from chromadb.config import Settings as ChromaSettings
    from numpy.typing import ArrayLike

    from knowledge.settings import KnowledgeSettings

log = logging.getLogger(__name__)

PAGE = 2000  # rows per get/update/delete call: well under Chroma's maximum batch size on every backend
EMBED_PAGE = 64  # chunks embedded and stored per call: the progress bar moves every few seconds
MODEL_KEY = "lessonbot_embedding_model"
CHROMA_FILE = "chroma.sqlite3"  # what embedded Chroma keeps in its folder


class EmbeddingModelMismatch(Exception):
    """The store holds vectors of another embedding model than the one configured."""


class StoreUnavailable(Exception):
    """The Chroma server cannot be reached, or the store on disk cannot be opened."""


@dataclass(frozen=True)
class StoredChunk:
    id: str
    text: str
    metadata: dict[str, Any]
    distance: float | None = None

    @property
    def indexed_text(self) -> str:
        return indexed_text(
            str(self.metadata.get("lesson_title", "")),
            [h for h in str(self.metadata.get("heading_path", "")).split(" > ") if h],
            self.text,
        )


def open_client(settings: KnowledgeSettings) -> ClientAPI:
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    chroma_settings = ChromaSettings(anonymized_telemetry=False, allow_reset=False)
    if settings.chroma_host:
        try:
            return chromadb.HttpClient(host=settings.chroma_host, port=settings.chroma_port, settings=chroma_settings)
        except Exception as exc:  # chromadb raises plain ValueError/ConnectError depending on the failure
            raise StoreUnavailable(
                f"Cannot reach the Chroma server at {settings.chroma_host}:{settings.chroma_port} ({exc}). "
                "Start it (`chroma run --path DIR --port PORT`) or unset CHROMA_HOST to use the store on disk."
            ) from None
    return _embedded_client(settings.chroma_path, chroma_settings)


# Embedded Chroma keeps one running store per folder for the whole process, and opening one is not safe from two
# threads at once: two clients opened together on a new folder both start it (each migrating the same SQLite file,
# or one finding the other's half-made state: "no such table: max_seq_id", an AttributeError or a KeyError inside
# chromadb), as an import ingesting in a worker thread while the bot's answerer opens the store can do. So a folder
# is opened once per process, under a lock, and that client is shared. A folder removed since (a scratch folder
# made again at the same path) is opened afresh: the old store's connections point at deleted files, and every new
# connection would find an empty database.
_embedded: dict[Path, ClientAPI] = {}
_opened_as: dict[Path, tuple[int, int] | None] = {}  # each folder's database file as it was when its store started
_opening = threading.Lock()


def database_identity(folder: Path) -> tuple[int, int] | None:
    """Which file the folder's Chroma database is (device and inode), None while there is none: a folder moved
    aside and made again holds another file under the same name."""
    try:
        found = (folder / CHROMA_FILE).stat()
    except OSError:
        return None
    return found.st_dev, found.st_ino


def _embedded_client(path: Path, chroma_settings: ChromaSettings) -> ClientAPI:
    from chromadb.api.client import Client

    key = path.resolve()
    with _opening:
        client = _embedded.get(key)
        now = database_identity(key) if client is not None else None
        if client is not None and now is None:
            del _embedded[key]
            if isinstance(client, Client):  # closing the last client stops chromadb's store for the folder
                with contextlib.suppress(Exception):  # its files are gone: nothing left to close cleanly
                    client.close()
            client = None
        elif client is not None and now != _opened_as.get(key):
            # made anew by another process: started again, the old store left to threads still reading through it
            _forget(client, key)
            client = None
        if client is None:
            key.mkdir(parents=True, exist_ok=True)
            client = _embedded[key] = _start_embedded(key, chroma_settings)
            _opened_as[key] = database_identity(key)
        return client


def _embedded_afresh(path: Path, chroma_settings: ChromaSettings, stale: ClientAPI) -> ClientAPI:
    """The folder's store started again, in place of `stale` (unless another thread already did). Embedded Chroma
    keeps what it read of a collection's vectors in the process, and another process's ingest (a course imported
    while the bot runs) changes them on disk under it: every read of them then fails ("Error finding id") until the
    store is started again. The old store is not stopped, as a thread may still be reading through it; it goes once
    nothing refers to it."""
    key = path.resolve()
    with _opening:
        client = _embedded.get(key)
        if client is not None and client is not stale:
            return client
        _forget(stale, key)
        client = _embedded[key] = _start_embedded(key, chroma_settings)
        _opened_as[key] = database_identity(key)
        return client


def _forget(client: ClientAPI, key: Path) -> None:
    """chromadb no longer hands out `client`'s store for the folder `key` (the next client starts one of its own);
    the old one is not stopped."""
    from chromadb.api.shared_system_client import SharedSystemClient

    identifier = getattr(client, "_identifier", str(key))
    SharedSystemClient._identifier_to_system.pop(identifier, None)
    SharedSystemClient._identifier_to_refcount.pop(identifier, None)


def _start_embedded(path: Path, chroma_settings: ChromaSettings) -> ClientAPI:
    """The store in `path`, or `StoreUnavailable` saying why not and what to do: its database is not one (a partial
    restore, a disk filled mid-write) or cannot be read. chromadb keeps the store of a folder that failed to start,
    and would hand it out again for that folder without starting it; it is forgotten, so the folder moved aside and
    made again is opened afresh by the same process."""
    import chromadb
    from chromadb.api.shared_system_client import SharedSystemClient

    known = set(SharedSystemClient._identifier_to_system)
    try:
        return chromadb.PersistentClient(path=str(path), settings=chroma_settings)
    except Exception as exc:  # chromadb's InternalError ("file is not a database"), an OSError, …
        for identifier in set(SharedSystemClient._identifier_to_system) - known:
            SharedSystemClient._identifier_to_system.pop(identifier, None)
        reason = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        raise StoreUnavailable(
            f"The knowledge store in {path} cannot be opened ({reason}). It holds only what was imported into it: "
            "move that folder aside, then run `lessonbot course import` for each course again (and `lessonbot "
            "ingest` for material added that way)."
        ) from exc


def open_store(settings: KnowledgeSettings, *, embedder: TextEmbedder | None = None) -> KnowledgeStore:
    """The store the settings point at, opened with the configured embedder (or `embedder`)."""
    reopen, folder = None, None
    if not settings.chroma_host:
        from chromadb.config import Settings as ChromaSettings

        path, chroma_settings = settings.chroma_path, ChromaSettings(anonymized_telemetry=False, allow_reset=False)

        def reopen(stale: ClientAPI) -> ClientAPI:
            return _embedded_afresh(path, chroma_settings, stale)

        folder = path
    return KnowledgeStore(
        open_client(settings), name=settings.chroma_collection, embedder=embedder or make_embedder(settings),
        reopen=reopen, folder=folder,
    )


class KnowledgeStore:
    """One Chroma collection per course, plus `<name>_courses`: one record per course (revision, chunk count).

    A collection per course keeps entitlement structural (only the allowed courses' collections are searched at
    all) and fast: Chroma's metadata-filtered vector query took about a second at 100,000 chunks, an unfiltered
    one a few milliseconds.
    """

    def __init__(
        self,
        client: ClientAPI,
        *,
        name: str,
        embedder: TextEmbedder,
        reopen: Callable[[ClientAPI], ClientAPI] | None = None,
        folder: Path | None = None,
    ) -> None:
        """`reopen`: the store on disk started again in place of a client (`_embedded_afresh`); None for a server.
        `folder`: the store's on disk, watched for a database made anew there by another process."""
        self.client = client
        self.name = name
        self.embedder = embedder
        self._reopen = reopen
        self._folder = folder
        self._database = database_identity(folder) if folder is not None else None
        self.courses: Collection = client.get_or_create_collection(
            f"{name}_courses", embedding_function=None, metadata={MODEL_KEY: embedder.model_id}
        )
        recorded = (self.courses.metadata or {}).get(MODEL_KEY)
        if recorded != embedder.model_id:
            raise self._mismatch(recorded or "an unknown embedding model")
        self._collections: dict[str, Collection] = {}
        self._sentence_collections: dict[str, Collection] = {}

    def _on(self, course_id: str | None, action: str, *, sentences: bool = False, **arguments: Any) -> Any:
        """`action` (get, query, upsert, update, delete) with `arguments` on the course's collection (its sentences'
        with `sentences`; the courses' records for None), done again once with the store started afresh when embedded
        Chroma fails on it: another process's ingest changed the course's vectors on disk under what this process had
        read of them (a course imported while the bot runs)."""
        from chromadb.errors import InternalError

        def step() -> Any:
            collection = (self.courses if course_id is None else self._sentences(course_id) if sentences
                          else self._collection(course_id))
            return getattr(collection, action)(**arguments)

        if self._folder is not None and self._reopen is not None:
            # The folder's database is another file than the one this process opened: another process moved the
            # folder aside (or removed it) and imported the courses again. Chroma would go on reading the old file
            # through its open connections, without an error, and answer from the courses as they were.
            now = database_identity(self._folder)
            if now is not None and now != self._database:
                log.info("the store on disk was made anew by another process: opening the new one",
                         extra={"store": str(self._folder)})
                self._start_afresh()
        try:
            return step()
        except InternalError:
            if self._reopen is None:
                raise
            log.info("the store on disk changed under this process (another process's ingest): opening it afresh")
            self._start_afresh()
            return step()

    def _start_afresh(self) -> None:
        assert self._reopen is not None
        self.client = self._reopen(self.client)
        if self._folder is not None:
            self._database = database_identity(self._folder)
        self._collections, self._sentence_collections = {}, {}
        self.courses = self.client.get_or_create_collection(
            f"{self.name}_courses", embedding_function=None, metadata={MODEL_KEY: self.embedder.model_id}
        )

    def _mismatch(self, recorded: str) -> EmbeddingModelMismatch:
        return EmbeddingModelMismatch(
            f"The knowledge store {self.name!r} holds vectors made with {recorded}, but the settings ask for "
            f"{self.embedder.model_id}. Vectors of two models cannot be compared, so nothing was mixed. "
            f"Either set EMBEDDINGS (and OPENAI_EMBEDDING_MODEL) back to what built the store, or set "
            f"CHROMA_COLLECTION to a new name and ingest the courses again."
        )

    def _collection(self, course_id: str) -> Collection:
        """The course's chunks collection (created on first use); named by a hash, as course ids are free text."""
        collection = self._collections.get(course_id)
        if collection is None:
            digest = hashlib.sha256(course_id.encode()).hexdigest()[:24]
            try:
                collection = self.client.get_or_create_collection(
                    f"{self.name}-{digest}",
                    # chroma types the parameter for text or images; this function embeds text, all it is given
                    embedding_function=LessonbotEmbeddingFunction(self.embedder),  # type: ignore[arg-type]
                    configuration={"hnsw": {"space": "cosine"}},
                    metadata={MODEL_KEY: self.embedder.model_id, "course_id": course_id},
                )
            except ValueError as exc:
                if "embedding function" not in str(exc).lower():
                    raise
                raise self._mismatch("another embedding function") from None
            recorded = (collection.metadata or {}).get(MODEL_KEY)
            if recorded != self.embedder.model_id:
                raise self._mismatch(recorded or "an unknown embedding model")
            self._collections[course_id] = collection
        return collection

    def _sentences(self, course_id: str) -> Collection:
        """The vectors of the course's chunks' sentences (made with the course's collection's model)."""
        collection = self._sentence_collections.get(course_id)
        if collection is None:
            collection = self.client.get_or_create_collection(
                f"{self._collection(course_id).name}-sentences",
                embedding_function=None,
                configuration={"hnsw": {"space": "cosine"}},
                metadata={MODEL_KEY: self.embedder.model_id, "course_id": course_id},
            )
            self._sentence_collections[course_id] = collection
        return collection

    # chunks ---------------------------------------------------------------------------------------------------------

    def chunk_metadata(self, course_id: str) -> dict[str, dict[str, Any]]:
        """id → metadata of every chunk of a course."""
        found: dict[str, dict[str, Any]] = {}
        for page in self._pages(course_id, include=["metadatas"]):
            found.update(zip(page["ids"], page["metadatas"] or [], strict=False))
        return found

    def chunk_texts(self, course_id: str) -> list[StoredChunk]:
        return [chunk for chunk, _ in self._chunks(course_id, vectors=False)]

    def chunks_and_vectors(self, course_id: str) -> tuple[list[StoredChunk], np.ndarray]:
        """Every chunk of a course with its vector (one row each, in the chunks' order)."""
        pairs = list(self._chunks(course_id, vectors=True))
        if not pairs:
            return [], np.zeros((0, 0), dtype=np.float32)
        return [chunk for chunk, _ in pairs], np.asarray([vector for _, vector in pairs], dtype=np.float32)

    def _chunks(self, course_id: str, *, vectors: bool) -> Iterable[tuple[StoredChunk, Any]]:
        """Every chunk of a course, a page at a time, with its vector (None unless `vectors`)."""
        include = ["documents", "metadatas", *(["embeddings"] if vectors else [])]
        for page in self._pages(course_id, include=include):
            embeddings = page["embeddings"] if vectors and page["embeddings"] is not None else [None] * len(page["ids"])
            for id, text, meta, vector in zip(page["ids"], page["documents"] or [], page["metadatas"] or [],
                                              embeddings, strict=False):
                yield StoredChunk(id, text or "", dict(meta or {})), vector

    def _pages(self, course_id: str, **query: Any) -> Iterable[Any]:
        if course_id not in self.revisions([course_id]):
            return
        offset = 0
        while True:
            page = self._on(course_id, "get", limit=PAGE, offset=offset, **query)
            if not page["ids"]:
                return
            yield page
            offset += len(page["ids"])

    def add(self, chunks: Sequence[Chunk], *, on_progress: Callable[[int], None] | None = None) -> None:
        """Embed and store chunks and their sentences, a page at a time (`on_progress` gets the count of each page
        stored). A page's chunks and sentences go to the model in one call, which batches them by length; a
        sentence two neighbouring chunks share (their overlap) is embedded once."""
        for start in range(0, len(chunks), EMBED_PAGE):
            page = chunks[start : start + EMBED_PAGE]
            units = [chunk.units for chunk in page]
            vectors = self._embed_once([chunk.indexed_text for chunk in page] + [u for us in units for u in us])
            for course_id, rows in _by_course(zip(page, vectors, strict=False)).items():
                self._on(
                    course_id, "upsert",
                    ids=[chunk.id for chunk, _ in rows],
                    embeddings=[vector for _, vector in rows],
                    documents=[chunk.text for chunk, _ in rows],
                    metadatas=[chunk.metadata() for chunk, _ in rows],
                )
            self._put_sentences(page, units, vectors[len(page) :])
            if on_progress:
                on_progress(len(page))

    def add_sentences(self, chunks: Sequence[Chunk], *, on_progress: Callable[[int], None] | None = None) -> None:
        """Embed and store the sentences of chunks already stored (a store made before sentences had vectors)."""
        for start in range(0, len(chunks), EMBED_PAGE):
            page = chunks[start : start + EMBED_PAGE]
            units = [chunk.units for chunk in page]
            self._put_sentences(page, units, self._embed_once([u for us in units for u in us]))
            if on_progress:
                on_progress(len(page))

    def _embed_once(self, texts: list[str]) -> list[list[float]]:
        """Vectors of `texts`, each distinct text embedded once."""
        distinct = list(dict.fromkeys(texts))
        vectors = dict(zip(distinct, self.embedder.embed(distinct), strict=True))
        return [vectors[text] for text in texts]

    def _put_sentences(self, chunks: Sequence[Chunk], units: Sequence[list[str]], vectors: Sequence[Any]) -> None:
        ends = np.cumsum([len(chunk_units) for chunk_units in units])
        own = [vectors[end - len(chunk_units) : end] for chunk_units, end in zip(units, ends, strict=True)]
        for course_id, grouped in _by_course(zip(chunks, own, strict=True)).items():
            ids = [f"{chunk.id}:{n}" for chunk, rows in grouped for n in range(len(rows))]
            if ids:
                self._on(
                    course_id, "upsert", sentences=True,
                    ids=ids,
                    embeddings=[vector for _, rows in grouped for vector in rows],
                    metadatas=[{"chunk_id": chunk.id} for chunk, rows in grouped for _ in rows],
                )

    def sentence_vectors(self, counts: dict[str, dict[str, int]]) -> dict[str, np.ndarray]:
        """chunk id → its sentences' vectors (one row each, in order), given as course id → {chunk id: sentences};
        a chunk whose sentences have no vectors (stored before they had) is left out."""
        found: dict[str, np.ndarray] = {}
        for course_id, chunks in counts.items():
            ids = [f"{chunk}:{n}" for chunk, count in chunks.items() for n in range(count)]
            if not ids:
                continue
            page = self._on(course_id, "get", sentences=True, ids=ids, include=["embeddings"])
            embeddings = page["embeddings"] if page["embeddings"] is not None else []
            rows = dict(zip(page["ids"], embeddings, strict=False))
            for chunk, count in chunks.items():
                vectors = [rows.get(f"{chunk}:{n}") for n in range(count)]
                if count and all(vector is not None for vector in vectors):
                    found[chunk] = np.asarray(vectors, dtype=np.float32)
        return found

    def update_metadata(self, chunks: Sequence[Chunk]) -> None:
        for course_id, rows in _by_course((chunk, None) for chunk in chunks).items():
            for start in range(0, len(rows), PAGE):
                page = [chunk for chunk, _ in rows[start : start + PAGE]]
                self._on(course_id, "update", ids=[c.id for c in page], metadatas=[c.metadata() for c in page])

    def delete(self, course_id: str, ids: Sequence[str]) -> None:
        for start in range(0, len(ids), PAGE):
            page = list(ids[start : start + PAGE])
            self._on(course_id, "delete", ids=page)
            self._on(course_id, "delete", sentences=True, where=cast("Where", {"chunk_id": {"$in": page}}))

    def fetch(self, ids: dict[str, list[str]]) -> dict[str, StoredChunk]:
        """Chunks by id, given as course id → chunk ids."""
        found: dict[str, StoredChunk] = {}
        for course_id, course_ids in ids.items():
            if course_ids:
                page = self._on(course_id, "get", ids=course_ids, include=["documents", "metadatas"])
                found.update(
                    (id, StoredChunk(id, text or "", dict(meta or {})))
                    for id, text, meta in zip(
                        page["ids"], page["documents"] or [], page["metadatas"] or [], strict=False
                    )
                )
        return found

    def vectors(self, ids: dict[str, list[str]]) -> dict[str, ArrayLike]:
        """Stored vectors by id, given as course id → chunk ids."""
        found: dict[str, ArrayLike] = {}
        for course_id, course_ids in ids.items():
            if course_ids:
                page = self._on(course_id, "get", ids=course_ids, include=["embeddings"])
                embeddings = page["embeddings"] if page["embeddings"] is not None else []
                found.update(zip(page["ids"], embeddings, strict=False))
        return found

    def nearest(self, vector: Iterable[float], *, sizes: dict[str, int], limit: int) -> list[StoredChunk]:
        """The chunks closest to `vector` in the courses of `sizes` (course id → chunks, as `sizes()` gives it; each
        searched in its own collection), closest first; `distance` is cosine distance (0 = same direction)."""
        found: list[StoredChunk] = []
        query: list[Sequence[float]] = [[float(x) for x in vector]]
        for course_id, size in sizes.items():
            if not size:
                continue
            result = self._on(
                course_id, "query",
                query_embeddings=query,
                n_results=min(limit, size),
                include=["documents", "metadatas", "distances"],
            )
            found.extend(
                StoredChunk(id, text or "", dict(meta or {}), distance)
                for id, text, meta, distance in zip(
                    result["ids"][0], (result["documents"] or [[]])[0], (result["metadatas"] or [[]])[0],
                    (result["distances"] or [[]])[0], strict=False,
                )
            )
        found.sort(key=lambda chunk: chunk.distance or 0.0)
        return found[:limit]

    # courses --------------------------------------------------------------------------------------------------------

    def mark_changed(self, course_id: str, *, language: str | None = None) -> str:
        """Give the course a new revision (after any change to its chunks, or to the language it is written in:
        every process then indexes it again); returns it. `language` (BCP 47) is recorded; None keeps the one
        recorded before."""
        revision = uuid.uuid4().hex
        placeholder: list[Sequence[float]] = [[1.0]]  # a record needs a vector; this collection is never searched
        record: dict[str, str | int] = {
            "revision": revision,
            "chunks": self._collection(course_id).count(),
            "updated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        language = language or self.language(course_id)
        if language:
            record["language"] = language
        self.courses.upsert(ids=[course_id], embeddings=placeholder, metadatas=[record])
        return revision

    def language(self, course_id: str) -> str | None:
        """The language the course is written in, as its last import gave it (None: never given, read as English)."""
        language = self._records([course_id]).get(course_id, {}).get("language")
        return str(language) if language else None

    def _records(self, course_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        if not course_ids:
            return {}
        page = self._on(None, "get", ids=list(course_ids), include=["metadatas"])
        return {id: dict(meta or {}) for id, meta in zip(page["ids"], page["metadatas"] or [], strict=False)}

    def revisions_and_sizes(self, course_ids: Sequence[str]) -> tuple[dict[str, str], dict[str, int]]:
        """`revisions()` and `sizes()` in one read."""
        records = self._records(course_ids)
        return ({id: str(record.get("revision", "")) for id, record in records.items()},
                {id: int(record.get("chunks", 0)) for id, record in records.items()})

    def revisions(self, course_ids: Sequence[str]) -> dict[str, str]:
        """course id → current revision, for the courses that have been ingested."""
        return {id: str(record.get("revision", "")) for id, record in self._records(course_ids).items()}

    def sizes(self, course_ids: Sequence[str]) -> dict[str, int]:
        """course id → number of chunks, for the courses that have been ingested."""
        return {id: int(record.get("chunks", 0)) for id, record in self._records(course_ids).items()}

    def course_ids(self) -> list[str]:
        return sorted(self.courses.get(include=[])["ids"])

    def count(self) -> int:
        return sum(self.sizes(self.course_ids()).values())

    def drop(self) -> None:
        """Delete every collection of this store (benchmarks start from nothing)."""
        for course_id in self.course_ids():
            self.client.delete_collection(self._sentences(course_id).name)
            self.client.delete_collection(self._collection(course_id).name)
        self.client.delete_collection(self.courses.name)


def _by_course(rows: Iterable[tuple[Chunk, Any]]) -> dict[str, list[tuple[Chunk, Any]]]:
    grouped: dict[str, list[tuple[Chunk, Any]]] = {}
    for chunk, extra in rows:
        grouped.setdefault(chunk.course_id, []).append((chunk, extra))
    return grouped
