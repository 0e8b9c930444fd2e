"""The answer without a language model: the course's own sentences that best match the question, with sources.

Nothing is written that the course does not say. Sentences of the best passages are scored by the rare question
words they contain (weighted by inverse document frequency), and the best two are quoted, in reading order, under
the lessons they come from. A list is quoted whole, with the sentence that leads into it ("If you clicked, act at
once:" and its steps): neither half means much without the other. When even the best sentences carry too little
of the question, the answer declines.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from knowledge.answer import FROM_YOUR_COURSE, CourseAnswer, NoAnswer, sources_of
from knowledge.retrieval import Passage
from knowledge.terms import sentences, terms

PASSAGES = 3
SENTENCES = 2
SENTENCE_CHARACTERS = 320
LIST_CHARACTERS = 800  # a list with its lead-in is quoted up to this long, whole items only
_LIST_ITEM = re.compile(r"(?:[-*•]|\d+[.)])\s")
# Share of the question's weighted words the quoted sentences must contain, and the passage similarity below
# which the course is taken not to cover the question (docs/knowledge.md shows the trade-off). Strong keyword
# evidence (STRONG_COVERAGE) overrules a low similarity: a short question on a rare course word ("what is
# smishing?") is close to no long passage in meaning, yet the passage is plainly about it.
MIN_COVERAGE = 0.35
MIN_SIMILARITY = 0.25
STRONG_COVERAGE = 0.75


def compose(question: str, passages: Sequence[Passage], *, rarity: Callable[[str], float]) -> CourseAnswer:
    """Quote the best sentences of `passages` for `question`; `rarity` gives a term's weight (its idf)."""
    wanted = {term: rarity(term) for term in dict.fromkeys(terms(question))}
    total = sum(wanted.values())
    scored: list[tuple[float, int, int, str]] = []  # (score, passage rank, sentence position, sentence)
    for rank, passage in enumerate(passages[:PASSAGES]):
        for position, sentence in enumerate(quotable_units(passage.text)):
            found = set(terms(sentence)) & wanted.keys()
            if found:
                # a small bonus for the better passage breaks ties between equally good sentences
                scored.append((sum(wanted[t] for t in found) + 0.01 * (PASSAGES - rank), rank, position, sentence))
    scored.sort(reverse=True)
    chosen = scored[:SENTENCES]
    covered = set().union(*(set(terms(s)) for *_, s in chosen)) & wanted.keys() if chosen else set()
    coverage = sum(wanted[t] for t in covered) / total if total else 0.0
    best_similarity = max((p.similarity for p in passages[:PASSAGES]), default=0.0)
    weak_meaning = best_similarity and best_similarity < MIN_SIMILARITY and coverage < STRONG_COVERAGE
    if not chosen or coverage < MIN_COVERAGE or weak_meaning:
        return CourseAnswer.none(NoAnswer.NOT_COVERED)

    by_passage: dict[int, list[tuple[int, str]]] = {}
    for _, rank, position, sentence in chosen:
        by_passage.setdefault(rank, []).append((position, _trim(sentence)))
    quotes = []
    for rank in sorted(by_passage):
        passage = passages[rank]
        quoted = " … ".join(sentence for _, sentence in sorted(by_passage[rank]))
        quotes.append(f"“{quoted}”\n— {passage.where}")
    return CourseAnswer(
        text=f"{FROM_YOUR_COURSE}\n\n" + "\n\n".join(quotes),
        sources=sources_of(passages[rank] for rank in sorted(by_passage)),
        passages=tuple(passages[rank].chunk_id for rank in sorted(by_passage)),
    )


def quotable_units(text: str) -> list[str]:
    """The passage's sentences, except that a list is one unit with the sentence that leads into it (one ending in
    ":"), its items one per line."""
    units: list[str] = []
    for piece in sentences(text):
        if _LIST_ITEM.match(piece) and units and (units[-1].endswith(":") or _is_item(units[-1].split("\n")[-1])):
            units[-1] += "\n" + piece
        else:
            units.append(piece)
    return units


def _is_item(line: str) -> bool:
    return bool(_LIST_ITEM.match(line))


def _trim(sentence: str) -> str:
    if "\n" in sentence:  # a list: whole lines, as many as fit
        lines = sentence.split("\n")
        kept = [lines[0]]
        for line in lines[1:]:
            if len("\n".join([*kept, line])) > LIST_CHARACTERS:
                kept.append("…")
                break
            kept.append(line)
        return "\n".join(kept)
    if len(sentence) <= SENTENCE_CHARACTERS:
        return sentence
    cut = sentence[:SENTENCE_CHARACTERS].rsplit(" ", 1)[0]
    return cut.rstrip(",;:") + " …"
