"""The ``recommender_copy`` plugin: rank candidate items for a shopper, then write copy for the best.

Ranking embeds the profile (interests plus the titles of recent items) and every item with a
sentence-embedding model, scores items by cosine relevance and picks them with MMR so that
near-duplicates do not crowd the list; items the shopper recently bought or viewed are only
recommended when too few others remain. Copy is written by a causal chat LM (the same kind of
model as the chatbot's), several variants per item, and checked against the brand's banned
words, the length limit and the item's own facts (see ``copywriting`` and ``checks``).

This module is imported by the web process to publish the schemas: torch, transformers and
numpy are imported in ``load`` and ``generate`` only.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

from atelier_sdk import (
    GenerationRequest,
    ItemResult,
    Manifest,
    Modality,
    OutputItem,
    Plugin,
    PluginError,
    ResourceClass,
    RunContext,
    require_model_dir,
)

from atelier_plugins.recommender_copy.schemas import (
    Profile,
    Recommendation,
    RecommenderInput,
    RecommenderOutput,
    RecommenderParams,
)

logger = logging.getLogger("atelier.plugins.recommender_copy")

#: Share of a job's progress that ranking stands for; writing the copy is the rest.
RANKING_SHARE = 0.1
#: A directory of this name inside the model directory replaces the packaged embedding model.
EMBEDDING_SUBDIR = "embedding"
ELLIPSIS = "\u2026"


class RecommenderCopyPlugin(Plugin):
    manifest = Manifest(
        id="recommender_copy",
        version="1.0.0",
        name="Recommendations with personalised copy",
        description=(
            "Ranks candidate items for a shopper's profile by semantic match, with diversity, and "
            "writes personalised copy for the top items in several variants, within the brand "
            "voice, length limit and banned words; copy never states a number the item's data lacks."
        ),
        modality=Modality.RANKED_TEXT,
        resource_class=ResourceClass.GPU,
        max_batch_size=8,
        time_limit_s=300,
        default_model_dir="demo/chat-lm",
    )
    Input = RecommenderInput
    Params = RecommenderParams
    Output = RecommenderOutput

    #: Set by ``load``; tests may assign any object with the same interface.
    embedder = None  # SentenceEmbedder: embed(list[str]) -> unit vectors
    lm = None  # CausalChatLM: generate(items, callback, should_stop) -> completions

    def load(self, device: str, model_dir: Path | None) -> None:
        model_dir = require_model_dir(model_dir, "a causal LM with a chat template, in Hugging Face format")
        from atelier_plugins.text.embedding import SentenceEmbedder
        from atelier_plugins.text.generation import CausalChatLM

        embedding_dir = model_dir / EMBEDDING_SUBDIR
        self.embedder = SentenceEmbedder(embedding_dir if embedding_dir.is_dir() else None, device=device)
        self.lm = CausalChatLM(model_dir, device)

    def unload(self) -> None:
        self.embedder = None
        self.lm = None

    def memory_bytes(self) -> int | None:
        # Both models as loaded: the chat LM in the dtype chosen for the device, and the embedding
        # model, which is packaged (not in the model directory, so its files would not be counted).
        from atelier_plugins.text.generation import module_bytes

        modules = [part.model for part in (self.lm, self.embedder) if part is not None]
        return module_bytes(modules)

    def generate(self, batch: Sequence[GenerationRequest], context: RunContext) -> list[ItemResult]:
        if self.embedder is None or self.lm is None:
            raise PluginError("The recommender models are not loaded; call load() first.", code="model_missing")
        from atelier_plugins.recommender_copy.copywriting import CopySlot, CopySpec, CopyWriter

        results: list[ItemResult | None] = [None] * len(batch)
        rankings = self._rank(batch, context, results)

        slots: list[CopySlot] = []
        for position, (request, ranked, _) in rankings.items():
            data, params = request.input, request.params
            spec = CopySpec(
                tone=data.tone,
                language=data.language,
                brand_voice=params.brand_voice,
                banned_words=tuple(params.banned_words),
                max_chars=params.max_chars,
                temperature=params.temperature,
                # A regeneration is another try at copy a reviewer sent back: the seed pinned in
                # params would write the same copy again, so it takes its job's own (new) seed.
                seed=params.seed if params.seed is not None and request.regeneration is None else request.seed,
                interests=data.profile.interests,
                variants=data.variants,
                regeneration=request.regeneration is not None,
                reviewer_note=request.regeneration.note if request.regeneration is not None else "",
            )
            for entry in ranked:
                for variant in range(data.variants):
                    slots.append(CopySlot(job=position, item=data.items[entry.index], variant=variant, spec=spec))

        reported: dict[int, float] = {}

        def report(position: int, fraction: float, detail: dict) -> None:
            # A regeneration round starts its slots' token counts again: never report going back.
            fraction = max(reported.get(position, 0.0), RANKING_SHARE + (1 - RANKING_SHARE) * min(fraction, 0.99))
            reported[position] = fraction
            context.report_progress(batch[position].job_id, fraction, stage="copy", **detail)

        writer = CopyWriter(self.lm, is_cancelled=lambda position: context.is_cancelled(batch[position].job_id), on_progress=report)
        writer.write(slots)
        self._assemble(batch, context, results, rankings, slots)
        return [result if result is not None else PluginError("No result.", code="plugin_error") for result in results]

    # -- ranking -------------------------------------------------------------------------------

    def _rank(self, batch, context, results) -> dict:
        """Rank every job's items, embedding each job's texts in a call of their own.

        Texts embedded together are padded to the longest, and padding moves an embedding by about
        1e-7, which can change a published score (6 decimals): a job's texts are therefore never
        embedded with another job's, so its output does not depend on its batch. Jobs with the same
        texts (the same candidates and profile) share one call, which gives each the same numbers.
        """
        import numpy as np

        from atelier_plugins.recommender_copy.ranking import (
            find_recent,
            item_similarity,
            item_text,
            profile_text,
            rank_items,
            relevance_scores,
        )

        prepared = []
        vectors_of: dict[tuple[str, ...], np.ndarray] = {}
        for position, request in enumerate(batch):
            if context.is_cancelled(request.job_id):
                results[position] = PluginError("Cancelled before it started.", code="cancelled")
                continue
            data = request.input
            recent = find_recent(data.profile, data.items)
            profile = profile_text(data.profile, data.items, recent)
            item_texts = [item_text(item) for item in data.items]
            texts = (*item_texts, profile) if profile else tuple(item_texts)
            if texts not in vectors_of:
                vectors_of[texts] = self.embedder.embed(list(texts))
            prepared.append((position, request, recent, profile, item_texts, vectors_of[texts]))

        rankings = {}
        for position, request, recent, profile, item_texts, vectors in prepared:
            data = request.input
            try:
                item_vectors = vectors[: len(item_texts)]
                profile_vector = vectors[len(item_texts)] if profile else None
                ranked = rank_items(
                    relevance_scores(profile, profile_vector, item_texts, item_vectors),
                    item_similarity(item_texts, item_vectors),
                    data.count,
                    diversity=request.params.diversity,
                    recent=recent,
                )
            except Exception as error:  # one job's bad data must not fail the batch
                logger.exception("ranking failed for job %s", request.job_id)
                results[position] = PluginError(f"Ranking failed: {type(error).__name__}: {error}", code="plugin_error")
                continue
            rankings[position] = (request, ranked, recent)
            context.report_progress(request.job_id, RANKING_SHARE, stage="ranked", items=len(ranked))
        return rankings

    # -- output ----------------------------------------------------------------------------------

    def _assemble(self, batch, context, results, rankings, slots) -> None:
        from atelier_plugins.recommender_copy.copywriting import remaining_violations

        by_job: dict[int, list] = {}
        for slot in slots:
            by_job.setdefault(slot.job, []).append(slot)
        for position, (request, ranked, recent) in rankings.items():
            job_slots = by_job.get(position, [])
            if any(slot.cancelled for slot in job_slots) or context.is_cancelled(request.job_id):
                results[position] = PluginError("Cancelled while running.", code="cancelled")
                continue
            failure = next((slot.failure for slot in job_slots if slot.failure), None)
            if failure:
                results[position] = PluginError(failure, code="invalid_input")
                continue
            broken = {slot.item.id: remaining_violations(slot) for slot in job_slots if remaining_violations(slot)}
            if broken:
                # Never pass a violation on: this is a bug, and the job says so rather than publishing it.
                logger.error("copy for job %s still breaks rules: %s", request.job_id, broken)
                results[position] = PluginError(f"Copy still breaks the rules: {broken}", code="plugin_error")
                continue
            data = request.input
            recommendations = []
            for rank, entry in enumerate(ranked, start=1):
                item = data.items[entry.index]
                variants = sorted((s for s in job_slots if s.item.id == item.id), key=lambda s: s.variant)
                recommendations.append(
                    Recommendation(
                        rank=rank,
                        item_id=item.id,
                        title=item.title,
                        score=round(entry.score, 6),
                        copy=[slot.result for slot in variants],
                    )
                )
            output = RecommenderOutput(
                recommendations=recommendations,
                profile_summary=profile_summary(data.profile, data.items, recent, ranked),
            )
            results[position] = [OutputItem(output)]
            context.report_progress(request.job_id, 1.0, stage="done", recommendations=len(recommendations))


def profile_summary(profile: Profile, items, recent: Sequence[int], ranked) -> str:
    """One line for the reviewer: what the ranking was based on and what was left out."""
    parts = []
    interests = " ".join(profile.interests.split())
    if interests:
        shown = interests if len(interests) <= 160 else interests[:159] + ELLIPSIS
        parts.append(f"Interests: \u201c{shown}\u201d")
    if recent:
        titles = ", ".join(items[index].title for index in recent[:5]) + (", " + ELLIPSIS if len(recent) > 5 else "")
        again = sum(1 for entry in ranked if entry.recent)
        note = f"; {again} recommended again for lack of other candidates" if again else ", not recommended again"
        parts.append(f"recently bought or viewed: {titles}{note}")
    unknown = len(profile.recent_items) - len(recent)
    if unknown > 0:
        parts.append(f"{unknown} recent item(s) not among the candidates")
    if not parts or (not interests and not recent):
        parts.insert(0, "No profile to match: items kept in the order given, spread for variety")
    return "; ".join(parts) + "."
