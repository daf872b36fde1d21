"""The demo image model: a small Stable Diffusion pipeline, trained here on scikit-learn's digits.

The platform ships no image weights and cannot download any, so ``prepare_demo_model`` trains one
offline, in a few minutes on two CPU cores, that draws the digit a prompt asks for ("a
handwritten digit 7", "the number seven", "7"). It is saved as a standard diffusers
``StableDiffusionPipeline`` directory (CLIP tokenizer and text encoder, UNet, AutoencoderKL,
scheduler; safetensors), which the image plugin loads with exactly the code that loads a real
Stable Diffusion checkpoint.

How it stays small and fast. The digits are 8x8 pictures, so the latent space is fixed rather
than learnt: the latent of a 32x32 image is the 8x8 grey picture itself (one channel, -1 ink to +1
paper). The UNet therefore diffuses 1x8x8 latents, which is what makes training fit the budget,
and the VAE only has to learn a fixed map each way: its decoder upsamples a latent 4x to a 32x32
RGB image (bilinear), its encoder downsamples one back. The prompt reaches the UNet through the
CLIP text encoder and the UNet's "text" addition embedding (attention pooling over the prompt's
tokens, added to the timestep embedding), which conditions every block at a fraction of the cost
of cross-attention. Ten percent of training prompts are empty, so classifier-free guidance works.
The inference scheduler is DPM-Solver++ with its predictions of the clean latent clipped to
[-1, 1], the range every latent of this model lives in.

``evaluate_demo`` checks that it does what it says: it generates images for each digit through the
image plugin and has a classifier trained on the same data set read them.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Callable

Progress = Callable[[int, int, str], None]


def training_settings(defaults: dict, options: dict) -> dict:
    """A demo trainer's settings: its ``defaults`` with the caller's ``options``; a name it does not know is a
    TypeError (a misspelt option would train with the default and say nothing)."""
    unknown = set(options) - set(defaults)
    if unknown:
        raise TypeError(f"unknown options {sorted(unknown)}; known: {sorted(defaults)}")
    return {**defaults, **options}

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")

#: How prompts ask for a digit in training; ``{}`` is the numeral ("7") or the word ("seven").
TRAINING_TEMPLATES = (
    "{}",
    "a {}",
    "digit {}",
    "number {}",
    "the digit {}",
    "the number {}",
    "the numeral {}",
    "handwritten {}",
    "a handwritten {}",
    "a handwritten digit {}",
    "a handwritten number {}",
    "an image of the digit {}",
    "a picture of the number {}",
    "a drawing of a {}",
    "a photo of a handwritten {}",
    "draw a {}",
    "write the number {}",
    "a scanned handwritten digit {}",
    "a black and white image of a {}",
    "a small grey digit {}",
)

#: Prompts of the evaluation that no training prompt used: do unseen words around the digit hurt?
UNSEEN_TEMPLATES = ("please draw the digit {}", "a neat {} written by hand")

#: Tokens a prompt keeps; longer prompts are cut (the pipeline warns). Eight words fit easily.
TEXT_LENGTH = 16

MIN_SNR_GAMMA = 5.0

LATENT_SCALE = 4  # a 32x32 image has an 8x8 latent: the digits' own resolution
NATIVE_SIZE = 8 * LATENT_SCALE

DEFAULTS = {
    "seed": 0,
    "unet_steps": 850,
    "unet_batch": 128,
    "vae_steps": 250,
    "vae_batch": 32,
    "threads": 2,
}


# --- data -------------------------------------------------------------------------------------


def digit_latents():
    """The digits data set as latents (N, 1, 8, 8) in [-1, 1] (ink -1, paper +1) and their labels."""
    import numpy as np
    import torch
    from sklearn.datasets import load_digits

    digits = load_digits()
    ink = digits.images.astype(np.float32) / 16.0
    latents = torch.from_numpy(1.0 - 2.0 * ink).unsqueeze(1)
    return latents, torch.from_numpy(digits.target.astype(np.int64))


def latent_to_image(latents):
    """The image a latent stands for: upsampled 4x (bilinear) to RGB; what the VAE decoder learns."""
    import torch.nn.functional as F

    image = F.interpolate(latents, scale_factor=LATENT_SCALE, mode="bilinear", align_corners=False)
    return image.clamp(-1.0, 1.0).repeat(1, 3, 1, 1)


def training_prompts() -> list[list[str]]:
    """For each digit, every training prompt that asks for it."""
    return [
        [template.format(form) for template in TRAINING_TEMPLATES for form in (str(digit), DIGIT_WORDS[digit])]
        for digit in range(10)
    ]


# --- components -------------------------------------------------------------------------------


def build_clip_tokenizer(corpus: list[str], *, vocab_size: int = 400, model_max_length: int = TEXT_LENGTH):
    """A CLIP tokenizer (byte-level BPE, ``</w>`` word ends) whose merges are learnt from ``corpus``.

    Real CLIP vocabularies cannot be downloaded here. This one has every byte (alone and at a
    word's end), so any prompt encodes without unknown tokens, and whole-word tokens for the words
    of ``corpus``. It pre-tokenises exactly as CLIP does, so the saved files load as an ordinary
    ``CLIPTokenizer``.
    """
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import CLIPTokenizer

    bos, eos = "<|startoftext|>", "<|endoftext|>"
    trainer_tokenizer = Tokenizer(models.BPE(unk_token=eos, end_of_word_suffix="</w>", continuing_subword_prefix=""))
    # The same normaliser and pre-tokeniser as transformers' CLIPTokenizer, so that the learnt
    # merges apply to the pieces it will produce.
    trainer_tokenizer.normalizer = normalizers.Sequence(
        [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()]
    )
    trainer_tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(
            Regex(r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""),
            behavior="removed",
            invert=True,
        ),
        pre_tokenizers.ByteLevel(add_prefix_space=False),
    ])
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, initial_alphabet=alphabet, end_of_word_suffix="</w>", show_progress=False
    )
    trainer_tokenizer.train_from_iterator(corpus, trainer)
    merges = [tuple(pair) for pair in json.loads(trainer_tokenizer.to_str())["model"]["merges"]]
    tokens = [*alphabet, *(symbol + "</w>" for symbol in alphabet)]
    tokens.extend(left + right for left, right in merges)
    vocab: dict[str, int] = {}
    for token in [*tokens, bos, eos]:
        vocab.setdefault(token, len(vocab))
    return CLIPTokenizer(
        vocab=vocab, merges=merges, model_max_length=model_max_length
    )


def build_text_encoder(tokenizer, *, hidden_size: int = 64, layers: int = 2, heads: int = 2):
    from transformers import CLIPTextConfig, CLIPTextModel

    return CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        max_position_embeddings=tokenizer.model_max_length,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    ))


def build_unet(text_width: int = 64):
    """A two-level UNet on 1x8x8 latents, conditioned through the "text" addition embedding."""
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=NATIVE_SIZE // LATENT_SCALE,
        in_channels=1,
        out_channels=1,
        layers_per_block=1,
        block_out_channels=(32, 64),
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
        mid_block_type="UNetMidBlock2D",
        norm_num_groups=8,
        cross_attention_dim=text_width,
        attention_head_dim=16,
        addition_embed_type="text",
        addition_embed_type_num_heads=4,
    )


def build_vae():
    """An AutoencoderKL with a 4x scale factor and one latent channel (the 8x8 grey picture)."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=1,
        # Few channels at full resolution, where convolutions cost the most.
        block_out_channels=(8, 16, 32),
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        layers_per_block=1,
        norm_num_groups=4,
        sample_size=NATIVE_SIZE,
        scaling_factor=1.0,  # the latents are already in [-1, 1]
    )


def build_schedulers():
    """The training scheduler (DDPM) and the one saved for inference (DPM-Solver++, same noise levels)."""
    from diffusers import DDPMScheduler, DPMSolverMultistepScheduler

    training = DDPMScheduler(
        num_train_timesteps=1000, beta_schedule="linear", beta_start=1e-4, beta_end=0.02,
        prediction_type="v_prediction", clip_sample=False, steps_offset=1,
    )
    inference = DPMSolverMultistepScheduler.from_config(
        training.config,
        algorithm_type="dpmsolver++",
        solver_order=2,
        # Every latent of this model lies in [-1, 1]: clip each predicted clean latent to it.
        thresholding=True,
        dynamic_thresholding_ratio=0.995,
        sample_max_value=1.0,
    )
    return training, inference


# --- training ---------------------------------------------------------------------------------


def _warmup_then_cosine(optimizer, steps: int, *, warmup_fraction: float):
    """Learning rate: a linear warm-up, then a cosine decay to zero (any number of steps, even 1)."""
    import torch

    warmup = max(1, round(steps * warmup_fraction))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _train_vae(vae, latents, *, steps: int, batch: int, generator, report: Callable[[int, float], None]):
    """Teach the decoder the 4x upsampling and the encoder its inverse, on digits and on noisier latents.

    The decoder must also render latents the diffusion model gets slightly wrong, so half of each
    batch is digits blurred into each other or with noise added; the target stays an exact
    function of the latent, so this widens what it learnt without changing it.
    """
    import torch

    optimizer = torch.optim.AdamW(vae.parameters(), lr=3e-3, weight_decay=0.0)
    schedule = _warmup_then_cosine(optimizer, steps, warmup_fraction=0.1)
    loss_value = float("nan")
    for step in range(steps):
        picked = latents[torch.randint(0, len(latents), (batch,), generator=generator)]
        others = latents[torch.randint(0, len(latents), (batch,), generator=generator)]
        mix = torch.rand(batch, 1, 1, 1, generator=generator)
        noise = 0.15 * torch.randn(picked.shape, generator=generator)
        half = batch // 2
        picked[half:] = (mix[half:] * picked[half:] + (1 - mix[half:]) * others[half:] + noise[half:]).clamp(-1, 1)
        target = latent_to_image(picked)
        decoded = vae.decode(picked).sample
        posterior = vae.encode(target).latent_dist
        # The log-variance is pulled low so that encoding is nearly deterministic (img2img use).
        loss = (
            torch.nn.functional.mse_loss(decoded, target)
            + torch.nn.functional.mse_loss(posterior.mean, picked)
            + 1e-3 * (posterior.logvar + 10.0).pow(2).mean()
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        loss_value = loss.item()
        report(step + 1, loss_value)
    return loss_value


def _train_unet(unet, text_encoder, tokenizer, scheduler, latents, labels, *, steps, batch, generator, report):
    """Denoising (v-prediction) training of the UNet and the text encoder together, with EMA weights."""
    import copy

    import torch

    prompts = training_prompts()
    per_digit = len(prompts[0])
    encoded = tokenizer(
        [prompt for digit_prompts in prompts for prompt in digit_prompts] + [""],
        padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt",
    ).input_ids
    empty_prompt = len(encoded) - 1
    # v-prediction with min-SNR weighting: the noisiest timesteps, where a sample's digit is
    # decided, keep a full share of the loss (with epsilon prediction they would get almost none),
    # and the nearly clean ones cannot dominate it.
    snr = scheduler.alphas_cumprod / (1.0 - scheduler.alphas_cumprod)
    snr_weights = snr.clamp(max=MIN_SNR_GAMMA) / (snr + 1.0)

    parameters = [*unet.parameters(), *text_encoder.parameters()]
    optimizer = torch.optim.AdamW(parameters, lr=2e-3, weight_decay=1e-4)
    schedule = _warmup_then_cosine(optimizer, steps, warmup_fraction=0.05)
    averaged = [copy.deepcopy(unet), copy.deepcopy(text_encoder)]
    live = [unet, text_encoder]
    loss_value = float("nan")
    for step in range(steps):
        rows = torch.randint(0, len(latents), (batch,), generator=generator)
        clean = latents[rows]
        choice = labels[rows] * per_digit + torch.randint(0, per_digit, (batch,), generator=generator)
        # Some prompts are empty: the unconditional prediction classifier-free guidance needs.
        dropped = torch.rand(batch, generator=generator) < 0.1
        prompt_ids = encoded[torch.where(dropped, torch.full_like(choice, empty_prompt), choice)]
        noise = torch.randn(clean.shape, generator=generator)
        timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (batch,), generator=generator)
        noisy = scheduler.add_noise(clean, noise, timesteps)
        text = text_encoder(prompt_ids)[0]
        error = (unet(noisy, timesteps, text).sample - scheduler.get_velocity(clean, noise, timesteps)).pow(2)
        loss = (snr_weights[timesteps] * error.mean(dim=(1, 2, 3))).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, 1.0)
        optimizer.step()
        schedule.step()
        # Averaged weights sample far better than the last ones after a short, noisy training.
        decay = min(0.995, (1 + step) / (10 + step))
        with torch.no_grad():
            for average_model, live_model in zip(averaged, live):
                for average, current in zip(average_model.parameters(), live_model.parameters()):
                    average.lerp_(current, 1.0 - decay)
        loss_value = loss.item()
        report(step + 1, loss_value)
    return averaged[0], averaged[1], loss_value


def prepare_demo_model(target_dir: Path, progress: Progress | None = None, **options) -> dict:
    """Train the demo digits model and save it into ``target_dir`` as a StableDiffusionPipeline.

    Deterministic for a given ``seed`` and thread count. Options (see ``DEFAULTS``): ``seed``,
    ``unet_steps``, ``unet_batch``, ``vae_steps``, ``vae_batch``, ``threads``. Returns figures:
    parameter counts, final losses, seconds, size on disk.
    """
    import torch
    from diffusers import StableDiffusionPipeline

    from atelier_plugins.image.pipeline import quiet_progress_bars

    settings = training_settings(DEFAULTS, options)
    target_dir = Path(target_dir)
    target_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    total = settings["vae_steps"] + settings["unet_steps"] + 2
    every = 20

    def tell(step: int, message: str) -> None:
        if progress is not None:
            progress(step, total, message)

    threads_before = torch.get_num_threads()
    torch.set_num_threads(settings["threads"])
    try:
        with torch.random.fork_rng(devices=[]):  # leave the caller's random state alone
            torch.manual_seed(settings["seed"])
            generator = torch.Generator().manual_seed(settings["seed"])
            latents, labels = digit_latents()
            corpus = [prompt for prompts in training_prompts() for prompt in prompts]
            corpus += [template.format(DIGIT_WORDS[d]) for template in UNSEEN_TEMPLATES for d in range(10)]
            tokenizer = build_clip_tokenizer(corpus)
            text_encoder = build_text_encoder(tokenizer)
            unet = build_unet(text_encoder.config.hidden_size)
            vae = build_vae()
            training_scheduler, inference_scheduler = build_schedulers()
            tell(1, "built the tokenizer and the untrained model")

            def vae_report(step: int, loss: float) -> None:
                if step % every == 0 or step == settings["vae_steps"]:
                    tell(1 + step, f"autoencoder step {step}/{settings['vae_steps']}, loss {loss:.4f}")

            vae.train()
            vae_loss = _train_vae(
                vae, latents, steps=settings["vae_steps"], batch=settings["vae_batch"], generator=generator,
                report=vae_report,
            )

            def unet_report(step: int, loss: float) -> None:
                if step % every == 0 or step == settings["unet_steps"]:
                    tell(1 + settings["vae_steps"] + step, f"diffusion step {step}/{settings['unet_steps']}, loss {loss:.4f}")

            unet.train()
            text_encoder.train()
            unet, text_encoder, unet_loss = _train_unet(
                unet, text_encoder, tokenizer, training_scheduler, latents, labels,
                steps=settings["unet_steps"], batch=settings["unet_batch"], generator=generator, report=unet_report,
            )
            for model in (unet, text_encoder, vae):
                model.eval()
            pipeline = StableDiffusionPipeline(
                vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=inference_scheduler,
                safety_checker=None, feature_extractor=None, image_encoder=None, requires_safety_checker=False,
            )
            with quiet_progress_bars():
                pipeline.save_pretrained(target_dir, safe_serialization=True)
    finally:
        torch.set_num_threads(threads_before)

    figures = {
        "parameters": {
            "unet": sum(p.numel() for p in unet.parameters()),
            "text_encoder": sum(p.numel() for p in text_encoder.parameters()),
            "vae": sum(p.numel() for p in vae.parameters()),
        },
        "final_loss": {"diffusion": round(unet_loss, 5), "autoencoder": round(vae_loss, 5)},
        "native_size": NATIVE_SIZE,
        "settings": settings,
        "bytes_on_disk": sum(path.stat().st_size for path in target_dir.rglob("*") if path.is_file()),
        "seconds": round(time.monotonic() - started, 1),
    }
    (target_dir / "README.md").write_text(_model_card(figures), encoding="utf-8")
    tell(total, "saved")
    return figures


def _model_card(figures: dict) -> str:
    return (
        "# Atelier demo image model: handwritten digits\n\n"
        "A tiny Stable Diffusion pipeline trained offline by `atelier_plugins.image.demo` on "
        "scikit-learn's digits data set (1,797 8x8 images). It draws the digit a prompt asks for "
        '("a handwritten digit 7", "the number seven", "7") at 32x32 pixels. It is a demonstration '
        "model: it knows nothing but digits.\n\n"
        f"```json\n{json.dumps(figures, indent=2)}\n```\n"
    )


# --- evaluation -------------------------------------------------------------------------------


def _digit_classifier():
    """Logistic regression on the 8x8 digits; also its accuracy on a held-out quarter, for reference."""
    import warnings

    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    train_x, test_x, train_y, test_y = train_test_split(
        digits.data, digits.target, test_size=0.25, random_state=0, stratify=digits.target
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence chatter; the held-out accuracy says how good it is
        held_out = LogisticRegression(max_iter=3000).fit(train_x, train_y).score(test_x, test_y)
        classifier = LogisticRegression(max_iter=3000).fit(digits.data, digits.target)
    return classifier, held_out


def image_to_digit_features(png: bytes):
    """A generated PNG as the classifier's input: grey, averaged down to 8x8, ink 0..16 like the data set."""
    import io

    import numpy as np
    from PIL import Image

    grey = np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=np.float32) / 255.0
    height, width = grey.shape
    blocks = grey[: height - height % 8, : width - width % 8].reshape(8, height // 8, 8, width // 8).mean(axis=(1, 3))
    return ((1.0 - blocks) * 16.0).reshape(-1)


def evaluate_demo(model_dir: Path, *, per_digit: int = 5, steps: int = 25, guidance: float = 7.5, seed: int = 1000) -> dict:
    """Generate ``per_digit`` images of each digit through the image plugin and classify them.

    The prompts cycle through the numeral, the word and two phrasings the model never saw in
    training. Returns the overall accuracy, the accuracy per digit and per prompt style, and the
    classifier's own accuracy on held-out real digits (the ceiling to compare against).
    """
    import numpy as np
    from atelier_sdk import GenerationRequest, RunContext

    from atelier_plugins.image.plugin import ImageInput, ImagePlugin

    styles = {
        "numeral": lambda d: f"a handwritten digit {d}",
        "word": lambda d: f"the number {DIGIT_WORDS[d]}",
        "bare": lambda d: str(d),
        "unseen phrasing": lambda d: UNSEEN_TEMPLATES[d % 2].format(DIGIT_WORDS[d]),
    }
    style_names = list(styles)
    classifier, held_out = _digit_classifier()
    plugin = ImagePlugin()
    plugin.load("cpu", Path(model_dir))
    started = time.monotonic()
    requests, expected, style_of = [], [], []
    for digit in range(10):
        for index in range(per_digit):
            style = style_names[index % len(style_names)]
            prompt = styles[style](digit)
            requests.append(GenerationRequest(
                job_id=f"eval-{digit}-{index}",
                input=ImageInput(prompt=prompt, steps=steps, guidance=guidance, seed=seed + 100 * digit + index),
                params=plugin.Params(),
                seed=0,
            ))
            expected.append(digit)
            style_of.append(style)
    context = RunContext("cpu")
    predicted = []
    for start in range(0, len(requests), plugin.manifest.max_batch_size):
        chunk = requests[start : start + plugin.manifest.max_batch_size]
        for result in plugin.generate(chunk, context):
            if isinstance(result, Exception):
                raise result
            png = next(a.data for a in result[0].artifacts if a.role == "primary")
            predicted.append(int(classifier.predict(image_to_digit_features(png)[None, :])[0]))
    plugin.unload()
    expected_array, predicted_array = np.array(expected), np.array(predicted)
    correct = expected_array == predicted_array
    return {
        "accuracy": round(float(correct.mean()), 3),
        "images": len(correct),
        "chance": 0.1,
        "per_digit": {str(d): round(float(correct[expected_array == d].mean()), 3) for d in range(10)},
        "per_prompt_style": {
            name: round(float(correct[np.array(style_of) == name].mean()), 3) for name in style_names
        },
        "classifier_accuracy_on_real_digits": round(float(held_out), 3),
        "steps": steps,
        "guidance": guidance,
        "seconds": round(time.monotonic() - started, 1),
    }
