"""Tiny diffusion pipelines built in code: the default models, offline, in seconds.

Every pipeline has the real architecture (a UNet or a Wan transformer, a VAE, a
text encoder, a tokenizer, a scheduler) at toy sizes with seeded random weights.
They are written with `save_pretrained` and read back by the backend with the
same `from_pretrained` call a real model id would get, so tests and the default
run exercise the production loading path without a model hub.

The outputs are noise-shaped pictures; what matters is that shapes, frame counts,
progress callbacks and cancellation behave as with real weights.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from inference.models import IMAGE_TO_IMAGE, IMAGE_TO_VIDEO, INPAINT, TEXT_TO_IMAGE, UPSCALE

# Bumped whenever a config below changes, so an old folder is rebuilt, not reused.
TINY_VERSION = 1
MARKER = ".complete"


# image-to-image reuses the text-to-image folder: same components, other pipeline class.
_FOLDERS = {
    TEXT_TO_IMAGE: "sd-text-to-image",
    IMAGE_TO_IMAGE: "sd-text-to-image",
    INPAINT: "sd-inpaint",
    UPSCALE: "sd-x4-upscale",
    IMAGE_TO_VIDEO: "wan-flf2v",
}

_BOS, _EOS = "<|startoftext|>", "<|endoftext|>"
_CROSS_DIM = 32  # text encoder width = UNet/transformer cross-attention width


def ensure_tiny_models(root: Path) -> dict[str, Path]:
    """Build the tiny pipelines under `root` once and return model name → folder.

    Idempotent: a folder whose marker file names the current version is reused.
    The marker is written last, so a build cut short is rebuilt on the next
    call; a file lock keeps concurrent builders (several workers) from racing.
    """
    root = Path(root)
    paths = {name: root / folder for name, folder in _FOLDERS.items()}
    if _is_complete(root):
        return paths
    root.mkdir(parents=True, exist_ok=True)
    with _locked(root / ".lock"):
        if _is_complete(root):  # another process finished while we waited
            return paths
        (root / MARKER).unlink(missing_ok=True)
        for folder, build in _builders().items():
            _build_into(root / folder, build)
        _write_atomic(root / MARKER, str(TINY_VERSION))
    return paths


def _is_complete(root: Path) -> bool:
    marker = root / MARKER
    return marker.is_file() and marker.read_text().strip() == str(TINY_VERSION)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f"{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _build_into(target: Path, build: Callable[[], Any]) -> None:
    """Save one pipeline to a scratch folder, then swap it into place."""
    scratch = target.with_name(f".{target.name}.{uuid.uuid4().hex}")
    try:
        build().save_pretrained(scratch, safe_serialization=True)
        shutil.rmtree(target, ignore_errors=True)
        os.replace(scratch, target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _builders() -> dict[str, Callable[[], Any]]:
    return {
        _FOLDERS[TEXT_TO_IMAGE]: build_text_to_image,
        _FOLDERS[INPAINT]: build_inpaint,
        _FOLDERS[UPSCALE]: build_upscale,
        _FOLDERS[IMAGE_TO_VIDEO]: build_image_to_video,
    }


# --- tokenizer -------------------------------------------------------------------------


def byte_level_vocab() -> dict[str, int]:
    """The 256 byte-level characters, their end-of-word forms, then BOS and EOS."""
    chars = list(_bytes_to_unicode().values())
    tokens = chars + [f"{c}</w>" for c in chars] + [_BOS, _EOS]
    return {token: index for index, token in enumerate(tokens)}


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's byte → printable character table (what byte-level BPE tokens are made of)."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    table = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return dict(sorted(table.items()))


def write_byte_level_tokenizer(folder: Path, model_max_length: int = 77) -> Path:
    """Write a CLIP tokenizer with no merges: every character is one token.

    No hub download is needed, and any prompt (any language, emoji) tokenizes.
    """
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(byte_level_vocab(), ensure_ascii=False))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    config = {
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": model_max_length,
        "bos_token": _BOS,
        "eos_token": _EOS,
        "unk_token": _EOS,
        "pad_token": _EOS,
        "do_lower_case": True,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
    return folder


def _tokenizer(model_max_length: int = 77) -> Any:
    import tempfile

    from transformers import CLIPTokenizer

    with tempfile.TemporaryDirectory() as tmp:
        folder = write_byte_level_tokenizer(Path(tmp), model_max_length)
        return CLIPTokenizer.from_pretrained(folder)


def _clip_text_encoder() -> Any:
    import torch
    from transformers import CLIPTextConfig, CLIPTextModel

    vocab = byte_level_vocab()
    torch.manual_seed(0)
    config = CLIPTextConfig(
        vocab_size=len(vocab),
        hidden_size=_CROSS_DIM,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=77,
        bos_token_id=vocab[_BOS],
        eos_token_id=vocab[_EOS],
        pad_token_id=vocab[_EOS],
    )
    return CLIPTextModel(config).eval()


# --- Stable Diffusion family -----------------------------------------------------------


def _sd_unet(in_channels: int) -> Any:
    import torch
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    return UNet2DConditionModel(
        sample_size=32,
        in_channels=in_channels,
        out_channels=4,
        block_out_channels=(4, 8),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=_CROSS_DIM,
        attention_head_dim=2,
        norm_num_groups=2,
    )


def _sd_vae(levels: int, scaling_factor: float = 0.18215) -> Any:
    """A VAE with `levels` blocks: it shrinks images by 2**(levels - 1)."""
    import torch
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        block_out_channels=[4] + [8] * (levels - 1),
        down_block_types=["DownEncoderBlock2D"] * levels,
        up_block_types=["UpDecoderBlock2D"] * levels,
        latent_channels=4,
        norm_num_groups=2,
        scaling_factor=scaling_factor,
    )


def _ddim() -> Any:
    from diffusers import DDIMScheduler

    return DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )


def _sd_components(unet_in_channels: int) -> dict[str, Any]:
    return {
        "unet": _sd_unet(unet_in_channels),
        "vae": _sd_vae(levels=2),
        "text_encoder": _clip_text_encoder(),
        "tokenizer": _tokenizer(),
        "scheduler": _ddim(),
        # No safety checker: it would need another model; production configures its own.
        "safety_checker": None,
        "feature_extractor": None,
        "requires_safety_checker": False,
    }


def build_text_to_image() -> Any:
    """StableDiffusionPipeline; img2img loads the same folder with its own class."""
    from diffusers import StableDiffusionPipeline

    return StableDiffusionPipeline(**_sd_components(unet_in_channels=4))


def build_inpaint() -> Any:
    """StableDiffusionInpaintPipeline: the UNet also sees the mask and masked image (4+1+4)."""
    from diffusers import StableDiffusionInpaintPipeline

    return StableDiffusionInpaintPipeline(**_sd_components(unet_in_channels=9))


def build_upscale() -> Any:
    """StableDiffusionUpscalePipeline, shaped like stabilityai's x4 upscaler.

    The UNet sees latents plus the low-res RGB image (4+3=7 channels) and the
    noise level as a class label; a 3-level VAE decodes latents at 4x size.
    """
    import torch
    from diffusers import (
        DDIMScheduler,
        DDPMScheduler,
        StableDiffusionUpscalePipeline,
        UNet2DConditionModel,
    )

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=32,
        in_channels=7,
        out_channels=4,
        block_out_channels=(4, 8),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=_CROSS_DIM,
        attention_head_dim=2,
        norm_num_groups=2,
        num_class_embeds=1000,  # noise_level is passed as a class label (max 350)
    )
    return StableDiffusionUpscalePipeline(
        vae=_sd_vae(levels=3, scaling_factor=0.08333),
        text_encoder=_clip_text_encoder(),
        tokenizer=_tokenizer(),
        unet=unet,
        low_res_scheduler=DDPMScheduler(),
        scheduler=DDIMScheduler(prediction_type="v_prediction", steps_offset=1),
        max_noise_level=350,
    )


# --- Wan 2.1 first-last-frame to video ---------------------------------------------------

_WAN_IMAGE_SIZE = 32  # CLIP vision input side; with patch 1 that is 32*32 tokens + CLS


def build_image_to_video() -> Any:
    """WanImageToVideoPipeline in its first-last-frame (FLF2V) form.

    The image projection carries a position embedding for two images' CLIP
    tokens, which is what lets `last_image` condition the end of the clip.
    """
    import torch
    from diffusers import (
        AutoencoderKLWan,
        FlowMatchEulerDiscreteScheduler,
        WanImageToVideoPipeline,
        WanTransformer3DModel,
    )
    from transformers import (
        CLIPImageProcessorPil,
        CLIPVisionConfig,
        CLIPVisionModel,
        UMT5Config,
        UMT5EncoderModel,
    )

    torch.manual_seed(0)
    vae = AutoencoderKLWan(
        base_dim=3,
        z_dim=16,
        dim_mult=[1, 1, 1, 1],
        num_res_blocks=1,
        temperal_downsample=[False, True, True],
    )
    torch.manual_seed(0)
    text_encoder = UMT5EncoderModel(
        UMT5Config(
            vocab_size=len(byte_level_vocab()),
            d_model=_CROSS_DIM,
            d_kv=8,
            d_ff=32,
            num_layers=1,
            num_heads=4,
            relative_attention_num_buckets=8,
            pad_token_id=byte_level_vocab()[_EOS],
        )
    ).eval()
    torch.manual_seed(0)
    transformer = WanTransformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=12,
        in_channels=36,  # 16 noisy latents + 16 condition latents + 4 frame mask
        out_channels=16,
        text_dim=_CROSS_DIM,
        freq_dim=256,
        ffn_dim=32,
        num_layers=2,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        rope_max_seq_len=32,
        image_dim=4,
        pos_embed_seq_len=2 * (_WAN_IMAGE_SIZE * _WAN_IMAGE_SIZE + 1),
    )
    torch.manual_seed(0)
    image_encoder = CLIPVisionModel(
        CLIPVisionConfig(
            hidden_size=4,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=_WAN_IMAGE_SIZE,
            intermediate_size=16,
            patch_size=1,
        )
    ).eval()
    # The PIL processor: the default (torchvision-backed) one cannot import here.
    image_processor = CLIPImageProcessorPil(
        crop_size={"height": _WAN_IMAGE_SIZE, "width": _WAN_IMAGE_SIZE},
        size={"shortest_edge": _WAN_IMAGE_SIZE},
    )
    return WanImageToVideoPipeline(
        tokenizer=_tokenizer(model_max_length=512),
        text_encoder=text_encoder,
        vae=vae,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        image_processor=image_processor,
        image_encoder=image_encoder,
        transformer=transformer,
    )
