"""A tiny image feature extractor for evaluation runs, built in a fixture (the demo's trains on the digits)."""

from __future__ import annotations


def build_tiny_feature_extractor(target):
    """A tiny vision model (random weights) saved as the demo's is: transformers' ResNetModel with an image
    processor, loaded by AutoModel and AutoImageProcessor."""
    import torch

    from atelier_plugins.image.demo_features import build_extractor, build_processor

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = build_extractor(hidden_sizes=(8, 16), embedding_size=8)
    model.save_pretrained(target, safe_serialization=True)
    build_processor().save_pretrained(target)
    return target
