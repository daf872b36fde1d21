"""A tiny Stable Diffusion pipeline built from configs in a fixture: random weights, real code paths.

Its images are noise patterns, but they come out of the real diffusers StableDiffusionPipeline
(CLIP tokenizer and text encoder, a cross-attention UNet, AutoencoderKL, a stochastic scheduler),
which is all that sizes, seeds, batching, progress and PNG metadata need. It is deliberately not
the demo model's architecture: four latent channels and cross-attention like a real checkpoint,
and a VAE that scales by 16, so that sizes which are multiples of 8 but not of 16 are refused.
"""

from __future__ import annotations

from pathlib import Path

TINY_NATIVE_SIZE = 64
TINY_SIZE_MULTIPLE = 16

PROMPT_WORDS = ["a red cat on a mat", "a blue dog in the park", "an old house by the sea", "seven green apples"]


def build_tiny_sd_pipeline(target: Path, *, seed: int = 0) -> Path:
    import torch
    from diffusers import AutoencoderKL, EulerAncestralDiscreteScheduler, StableDiffusionPipeline, UNet2DConditionModel

    from atelier_plugins.image.demo import build_clip_tokenizer, build_text_encoder
    from atelier_plugins.image.pipeline import quiet_progress_bars

    tokenizer = build_clip_tokenizer(PROMPT_WORDS * 2, vocab_size=300, model_max_length=12)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        text_encoder = build_text_encoder(tokenizer, hidden_size=32, layers=1, heads=2)
        unet = UNet2DConditionModel(
            sample_size=TINY_NATIVE_SIZE // TINY_SIZE_MULTIPLE,
            in_channels=4,
            out_channels=4,
            layers_per_block=1,
            block_out_channels=(16, 32),
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
            cross_attention_dim=32,
            attention_head_dim=8,
            norm_num_groups=8,
        )
        vae = AutoencoderKL(
            in_channels=3,
            out_channels=3,
            latent_channels=4,
            block_out_channels=(8, 8, 8, 8, 8),
            down_block_types=("DownEncoderBlock2D",) * 5,
            up_block_types=("UpDecoderBlock2D",) * 5,
            layers_per_block=1,
            norm_num_groups=4,
            sample_size=TINY_NATIVE_SIZE,
        )
    scheduler = EulerAncestralDiscreteScheduler(
        num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
        steps_offset=1,
    )
    pipeline = StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
        safety_checker=None, feature_extractor=None, image_encoder=None, requires_safety_checker=False,
    )
    target.mkdir(parents=True, exist_ok=True)
    with quiet_progress_bars():
        pipeline.save_pretrained(target, safe_serialization=True)
    return target
