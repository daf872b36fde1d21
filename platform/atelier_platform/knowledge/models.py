from __future__ import annotations

import uuid

from django.db import models

from atelier_platform.accounts.models import Project


class DocumentFormat(models.TextChoices):
    TEXT = "text", "Plain text"
    MARKDOWN = "markdown", "Markdown"
    HTML = "html", "HTML"


class IndexState(models.TextChoices):
    PENDING = "pending", "Waiting to be indexed"
    INDEXED = "indexed", "Indexed"
    FAILED = "failed", "Indexing failed"


class KnowledgeDocument(models.Model):
    """A document of a project's knowledge base; its chunks are what the chatbot retrieves."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="knowledge_documents")
    source_id = models.CharField(max_length=200, help_text="the caller's stable name for the document")
    title = models.CharField(max_length=300)
    format = models.CharField(max_length=20, choices=DocumentFormat.choices, default=DocumentFormat.MARKDOWN)
    content = models.TextField()
    content_sha256 = models.CharField(max_length=64)
    #: bumped whenever the content changes, so a stale indexing run can tell it is stale
    revision = models.PositiveIntegerField(default=1)
    state = models.CharField(max_length=20, choices=IndexState.choices, default=IndexState.PENDING)
    error = models.TextField(blank=True)
    embedding_model = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    indexed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["source_id"]
        constraints = [models.UniqueConstraint(fields=["project", "source_id"], name="one_document_per_source_id")]

    def __str__(self) -> str:
        return f"{self.source_id} ({self.project})"


class KnowledgeChunk(models.Model):
    document = models.ForeignKey(KnowledgeDocument, on_delete=models.CASCADE, related_name="chunks")
    index = models.PositiveIntegerField()
    heading = models.CharField(max_length=500, blank=True)
    text = models.TextField()
    #: float32 little-endian, unit length: a dot product is the cosine similarity
    embedding = models.BinaryField()

    class Meta:
        ordering = ["document", "index"]
        constraints = [models.UniqueConstraint(fields=["document", "index"], name="one_chunk_per_document_index")]

    @property
    def chunk_id(self) -> str:
        return f"{self.document.source_id}#{self.index}"
