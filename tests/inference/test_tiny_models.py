"""The tiny pipelines: built in code, saved, and loaded back the production way."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from inference import tiny
from inference.models import IMAGE_TO_IMAGE, IMAGE_TO_VIDEO, INPAINT, TEXT_TO_IMAGE, UPSCALE

ROOT = Path(__file__).resolve().parents[2]


def test_importing_inference_modules_loads_neither_torch_nor_diffusers() -> None:
    code = (
        "import sys, inference.backends, inference.media, inference.tiny, inference.frames;"
        "print(sorted(m for m in ('torch', 'diffusers', 'transformers', 'av', 'PIL')"
        " if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


def test_tiny_models_load_offline_through_diffusers_from_pretrained(
    tiny_models: dict[str, Path],
) -> None:
    from diffusers import DiffusionPipeline

    assert set(tiny_models) == {TEXT_TO_IMAGE, IMAGE_TO_IMAGE, INPAINT, UPSCALE, IMAGE_TO_VIDEO}
    assert all((path / "model_index.json").is_file() for path in tiny_models.values())
    pipe = DiffusionPipeline.from_pretrained(tiny_models[TEXT_TO_IMAGE], local_files_only=True)
    assert type(pipe).__name__ == "StableDiffusionPipeline"


def test_the_backend_loads_each_family_with_its_pipeline_class(backend) -> None:
    classes = {name: type(backend.pipeline(name)).__name__ for name in backend.models}
    assert classes == {
        TEXT_TO_IMAGE: "StableDiffusionPipeline",
        IMAGE_TO_IMAGE: "StableDiffusionImg2ImgPipeline",
        INPAINT: "StableDiffusionInpaintPipeline",
        UPSCALE: "StableDiffusionUpscalePipeline",
        IMAGE_TO_VIDEO: "WanImageToVideoPipeline",
    }
    # img2img shares the text-to-image weights instead of loading them twice.
    assert backend.pipeline(IMAGE_TO_IMAGE).unet is backend.pipeline(TEXT_TO_IMAGE).unet
    assert backend.pipeline(UPSCALE).unet.config.in_channels == 7
    assert backend.pipeline(INPAINT).unet.config.in_channels == 9


def test_a_second_call_reuses_the_built_folder(tiny_models: dict[str, Path]) -> None:
    root = next(iter(tiny_models.values())).parent
    marker = root / tiny.MARKER
    before = marker.stat().st_mtime_ns
    assert tiny.ensure_tiny_models(root) == tiny_models
    assert marker.stat().st_mtime_ns == before


class _FakePipe:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail

    def save_pretrained(self, folder: Path, **_: object) -> None:
        if self.fail:
            raise RuntimeError("power cut")
        folder.mkdir(parents=True)
        (folder / "model_index.json").write_text("{}")


def test_a_build_cut_short_leaves_no_marker_and_is_rebuilt_next_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folders = sorted(set(tiny._FOLDERS.values()))
    broken = {f: (lambda f=f: _FakePipe(fail=f == folders[-1])) for f in folders}
    monkeypatch.setattr(tiny, "_builders", lambda: broken)
    with pytest.raises(RuntimeError):
        tiny.ensure_tiny_models(tmp_path)
    assert not (tmp_path / tiny.MARKER).exists()
    assert not list(tmp_path.glob(".*.*")), "scratch folders are cleaned up"

    monkeypatch.setattr(tiny, "_builders", lambda: {f: _FakePipe for f in folders})
    paths = tiny.ensure_tiny_models(tmp_path)
    assert (tmp_path / tiny.MARKER).read_text() == str(tiny.TINY_VERSION)
    assert all((path / "model_index.json").is_file() for path in paths.values())


def test_the_byte_level_tokenizer_encodes_any_text_without_unknown_tokens(tmp_path: Path) -> None:
    from transformers import CLIPTokenizer

    tokenizer = CLIPTokenizer.from_pretrained(tiny.write_byte_level_tokenizer(tmp_path))
    vocab = tiny.byte_level_vocab()
    assert len(vocab) == 2 * 256 + 2
    for text in ("a red fox", "héllo wörld 🙂", "日本の夜"):
        ids = tokenizer(text).input_ids
        assert ids[0] == vocab["<|startoftext|>"] and ids[-1] == vocab["<|endoftext|>"]
        assert tokenizer.decode(ids, skip_special_tokens=True) == text


def test_the_backend_picks_the_cpu_and_float32_when_torch_sees_no_gpu(backend) -> None:
    import torch

    assert torch.cuda.is_available() is False  # this machine; on a GPU box: cuda + float16
    assert (backend.device, backend.dtype) == ("cpu", torch.float32)


def test_half_precision_loads_keep_the_float32_pinned_layers_in_float32(
    tiny_models: dict[str, Path],
) -> None:
    import torch
    from diffusers import DiffusionPipeline, WanTransformer3DModel

    from inference.loading import load_pipeline

    pins = WanTransformer3DModel._keep_in_fp32_modules
    pipe = load_pipeline(DiffusionPipeline, tiny_models[IMAGE_TO_VIDEO], torch.float16)
    dtypes = {name: p.dtype for name, p in pipe.transformer.named_parameters()}
    assert WanTransformer3DModel._keep_in_fp32_modules == pins, "class pins are restored"
    assert dtypes["scale_shift_table"] == torch.float32
    assert dtypes["patch_embedding.weight"] == torch.float16
