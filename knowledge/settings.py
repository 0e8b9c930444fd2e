"""What the knowledge room needs to know, and nothing else: where Chroma is, which models to use, each learner's
allowance.

The bot reads the environment once (bot/config.py) and hands knowledge this object (`bot.config.knowledge_settings`);
knowledge never reads the environment or the bot's settings itself. Messages still name the environment variables
(OPENAI_MODEL, CHROMA_HOST …), since that is where a person changes them; the bot checked every value when it read it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal


@dataclass(frozen=True, kw_only=True)
class KnowledgeSettings:
    # the store: a Chroma server when `chroma_host` is set, else the folder `chroma_path`
    chroma_path: Path
    chroma_host: str
    chroma_port: int
    chroma_collection: str  # the name every collection of the store starts with

    # embeddings: the offline MiniLM model, or an OpenAI-compatible endpoint
    embeddings: Literal["offline", "openai"]
    tokenizer_dir: Path | None  # None: where `make install` puts the tokenizer files
    embedding_threads: int

    # the OpenAI-compatible endpoint: embeddings (EMBEDDINGS=openai) and written answers (when `openai_model` is set)
    openai_api_key: str
    openai_base_url: str
    openai_model: str  # empty: extractive answers only
    openai_embedding_model: str
    max_answer_tokens: int
    model_timeout_seconds: float

    # each learner's allowance, the cap over all learners, and the answer cache
    rate_limit_per_minute: int
    daily_token_budget: int
    model_calls_per_day: int  # model calls of every learner together, per UTC day
    cache_seconds: int  # 0: answers are never reused
