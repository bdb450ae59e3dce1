"""Stable Diffusion in diffusers, by hand (aigc_course.diffusion.stable_diffusion, chapter 3.8).

The tiny, randomly initialised pipeline is assembled offline from configs (CLIP text encoder ->
U-Net denoising a latent -> VAE decoder). On it, CI runs the very functions that run the real
weights on a GPU: ``generate_by_hand`` must equal ``StableDiffusionPipeline`` for the same seed
whatever the dtype, the scheduler and the generator's device, and ``run_real_stable_diffusion``
runs everything but the download with ``device="cpu"``.

There is no CUDA here, so a CUDA generator is simulated: an object whose ``device`` is "cuda",
with ``torch.randn`` patched to insist, as PyTorch does, that a generator draws on its own
device (and then to draw from a CPU twin in its place).
"""

import inspect
import json
from pathlib import Path

import pytest
import torch

transformers = pytest.importorskip("transformers")
diffusers = pytest.importorskip("diffusers")

from aigc_course.diffusion import stable_diffusion as sd  # noqa: E402
from aigc_course.diffusion.stable_diffusion import (  # noqa: E402
    encode_text,
    generate_by_hand,
    initial_latents,
    run_real_stable_diffusion,
)
from aigc_course.diffusion.stable_diffusion import tiny_clip_tokenizer as tiny_tokenizer  # noqa: E402
from aigc_course.diffusion.stable_diffusion import tiny_stable_diffusion as tiny_pipeline  # noqa: E402

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "03_algorithms" / "08_stable_diffusion_anatomy.ipynb"
PROMPT = "a low digit"


@pytest.fixture
def pipe(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    return tiny_pipeline(tmp_path)


def seeded(seed=0):
    return torch.Generator("cpu").manual_seed(seed)


def pipeline_latents(pipe, seed=0, steps=3, guidance=5.0):
    return pipe(PROMPT, num_inference_steps=steps, guidance_scale=guidance, generator=seeded(seed),
                output_type="latent").images


class CudaGenerator:
    """Stands for ``torch.Generator("cuda").manual_seed(seed)``: its draws come from a CPU twin."""

    def __init__(self, seed):
        self.device = torch.device("cuda")
        self.twin = seeded(seed)


@pytest.fixture
def strict_randn(monkeypatch):
    """torch.randn that, like PyTorch, refuses a generator on another device than the draw's.

    Returns the list of its calls (device, dtype, generator)."""
    real, calls = torch.randn, []

    def randn(*size, generator=None, device=None, dtype=None, **kw):
        where = torch.device(device if device is not None else "cpu")
        calls.append({"device": where, "dtype": dtype, "generator": generator})
        if generator is not None and generator.device.type != where.type:
            raise RuntimeError(f"Expected a '{where.type}' device type for generator but found '{generator.device.type}'")
        if isinstance(generator, CudaGenerator):  # the draw "on the GPU", from the twin
            return real(*size, generator=generator.twin, dtype=dtype, **kw)
        return real(*size, generator=generator, device=device, dtype=dtype, **kw)

    monkeypatch.setattr(torch, "randn", randn)
    return calls


# ---------------------------------------------------------------- the tiny pipeline


def test_tokenizer_uses_the_merges(tmp_path):
    tok, _ = tiny_tokenizer(tmp_path)
    ids = tok("a low digit").input_ids
    assert tok.convert_ids_to_tokens(ids) == ["<|startoftext|>", "a</w>", "low</w>", "digit</w>", "<|endoftext|>"]


def test_tiny_stable_diffusion_runs_offline_and_is_deterministic(pipe):
    def run(seed):
        return pipe(PROMPT, num_inference_steps=2, guidance_scale=5.0, generator=seeded(seed),
                    output_type="np").images

    a, b, c = run(0), run(0), run(1)
    # the VAE halves the size once per extra block: latent 4 x 8 x 8 -> image 16 x 16 x 3
    assert pipe.vae_scale_factor == 2
    assert a.shape == (1, 16, 16, 3)
    assert a.min() >= 0 and a.max() <= 1  # "np" output is post-processed to [0, 1]
    assert (a == b).all()  # the same generator seed gives the same image
    assert not (a == c).all()


def test_prompt_embeddings_come_from_the_clip_text_encoder(pipe):
    ids = pipe.tokenizer(PROMPT, padding="max_length", max_length=16, return_tensors="pt").input_ids
    hidden = pipe.text_encoder(ids).last_hidden_state  # (1, 16, 32): one vector per token
    assert hidden.shape == (1, 16, 32)
    prompt_embeds, negative = pipe.encode_prompt(PROMPT, "cpu", 1, True)
    torch.testing.assert_close(prompt_embeds, hidden)
    assert negative.shape == hidden.shape  # the empty prompt of classifier-free guidance
    by_hand = encode_text(pipe, ["", PROMPT], "cpu", torch.float32)
    torch.testing.assert_close(by_hand, torch.cat([negative, prompt_embeds]))


# ---------------------------------------------------------------- generate_by_hand == the pipeline


@pytest.mark.parametrize("guidance", [5.0, 1.0])  # 1: no guidance, one U-Net call per step
def test_generate_by_hand_equals_the_pipeline(pipe, guidance):
    latents, images = generate_by_hand(pipe, PROMPT, num_steps=3, guidance=guidance, generator=seeded(0))
    torch.testing.assert_close(latents, pipeline_latents(pipe, guidance=guidance), rtol=0, atol=0)
    assert images.shape == (1, 3, 16, 16)
    other, _ = generate_by_hand(pipe, PROMPT, num_steps=3, guidance=guidance, generator=seeded(1))
    assert not torch.equal(latents, other)


def test_generate_by_hand_takes_the_dtype_from_the_pipeline(pipe):
    """float64 everywhere: a hard-coded float32 would fail in the U-Net, and float32 noise cast to
    float64 is not the float64 noise the pipeline draws."""
    pipe = pipe.to(torch.float64)
    latents, images = generate_by_hand(pipe, PROMPT, num_steps=3, guidance=5.0, generator=seeded(0))
    assert latents.dtype == images.dtype == torch.float64
    torch.testing.assert_close(latents, pipeline_latents(pipe), rtol=0, atol=0)


def test_generate_by_hand_follows_an_ancestral_scheduler(pipe):
    """Euler ancestral: init_noise_sigma is set by set_timesteps (about 14.6, not 1), and every
    step adds fresh noise from the same generator."""
    pipe.scheduler = diffusers.EulerAncestralDiscreteScheduler.from_config(pipe.scheduler.config)
    latents, _ = generate_by_hand(pipe, PROMPT, num_steps=3, guidance=5.0, generator=seeded(0))
    assert pipe.scheduler.init_noise_sigma > 2
    torch.testing.assert_close(latents, pipeline_latents(pipe), rtol=0, atol=0)


def test_generate_by_hand_hard_codes_no_device_or_dtype():
    for fn in (generate_by_hand, initial_latents):
        src = inspect.getsource(fn).split('"""')[-1]  # the code, not the docstring
        for literal in ('"cpu"', '"cuda"', "float32", "float16", "torch.randn("):
            assert literal not in src, f"{fn.__name__} hard-codes {literal}"


def test_initial_latents_draw_on_the_generators_device(pipe, strict_randn):
    """The defect of chapter 3.8: the noise was drawn on the default device with a CUDA generator."""
    z = initial_latents(pipe, generator=CudaGenerator(0))
    assert strict_randn[-1]["device"] == torch.device("cuda")  # drawn where the generator lives
    assert strict_randn[-1]["dtype"] == pipe.unet.dtype
    assert z.device == pipe.unet.device and z.shape == (1, 4, 8, 8)  # then moved to the model
    cpu = initial_latents(pipe, generator=seeded(0))
    assert strict_randn[-1]["device"] == torch.device("cpu")
    torch.testing.assert_close(z, cpu, rtol=0, atol=0)  # the twin's numbers, scaled the same way


def test_generate_by_hand_with_a_generator_on_another_device(pipe, strict_randn):
    """A CUDA generator with the model on the CPU here (on Colab: both on CUDA, the default device
    of torch.randn being the CPU): the noise comes from the generator, the result is the pipeline's."""
    latents, _ = generate_by_hand(pipe, PROMPT, num_steps=3, guidance=5.0, generator=CudaGenerator(0))
    assert any(c["device"].type == "cuda" for c in strict_randn)
    torch.testing.assert_close(latents, pipeline_latents(pipe), rtol=0, atol=0)


def test_the_strict_randn_catches_the_old_bug(strict_randn):
    """The check above has teeth: the old draw, torch.randn(..., generator=g) on the default device."""
    with pytest.raises(RuntimeError, match="device type for generator"):
        torch.randn((1, 4, 8, 8), generator=CudaGenerator(0))


# ---------------------------------------------------------------- the real weights, without them


def test_run_real_stable_diffusion_after_loading(pipe):
    """Everything the real run does after the download, on the tiny pipeline with device="cpu"."""
    out = run_real_stable_diffusion(PROMPT, num_steps=2, guidance=5.0, seed=0, device="cpu", pipe=pipe)
    assert out["pipeline"].shape == out["by_hand"].shape == (3, 16, 16)
    assert out["by_hand"].dtype == torch.float32 and out["by_hand"].device.type == "cpu"
    assert 0 <= out["by_hand"].min() and out["by_hand"].max() <= 1
    assert out["max_abs_diff"] < 1e-5


def test_run_real_stable_diffusion_loads_with_the_corrected_arguments(pipe, monkeypatch):
    calls = []

    def from_pretrained(model_id, **kwargs):
        calls.append((model_id, kwargs))
        return pipe

    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(diffusers.StableDiffusionPipeline, "from_pretrained", from_pretrained)
    out = run_real_stable_diffusion(PROMPT, num_steps=2, device="cpu", dtype=torch.float16)
    assert calls == [(sd.SD15, {"torch_dtype": torch.float16, "variant": "fp16"})]  # not revision="fp16"
    assert out["max_abs_diff"] < 1e-5  # the tiny pipeline stayed float32: only loading saw the dtype


@pytest.mark.parametrize("cuda, offline, reason", [(False, False, "no CUDA GPU"), (True, True, "HF_HUB_OFFLINE")])
def test_run_real_stable_diffusion_skips_loading_when_it_cannot_work(monkeypatch, capsys, cuda, offline, reason):
    def no_download(*args, **kwargs):
        raise AssertionError("must not try to download")

    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1" if offline else "0")
    monkeypatch.setattr(sd, "load_stable_diffusion", no_download)
    assert run_real_stable_diffusion(device="cuda") is None
    assert reason in capsys.readouterr().out


def real_sd_cell() -> str:
    cells = json.loads(NOTEBOOK.read_text(encoding="utf-8"))["cells"]
    (src,) = ["".join(c["source"]) for c in cells if c["cell_type"] == "code" and "RUN_REAL_SD = False" in "".join(c["source"])]
    return src


def test_the_notebooks_real_sd_cell_calls_the_tested_function_for_cuda(pipe, monkeypatch):
    """Run chapter 3.8's guarded cell with RUN_REAL_SD = True: it must hand device="cuda" and
    float16 to run_real_stable_diffusion and make no generator of its own. The call is then
    redirected to the tiny pipeline on the CPU, so the cell's plotting runs as well."""
    import matplotlib.pyplot as plt

    src = real_sd_cell()
    assert "torch.Generator" not in src and "from_pretrained" not in src
    calls, real = [], sd.run_real_stable_diffusion

    def recorded(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **{**kwargs, "device": "cpu", "dtype": torch.float32, "pipe": pipe, "num_steps": 2})

    monkeypatch.setattr(sd, "run_real_stable_diffusion", recorded)
    namespace = {"torch": torch, "plt": plt}
    exec(src.replace("RUN_REAL_SD = False", "RUN_REAL_SD = True"), namespace)
    plt.close("all")
    assert len(calls) == 1
    assert torch.device(calls[0]["device"]).type == "cuda" and calls[0]["dtype"] == torch.float16
    assert namespace["real"]["max_abs_diff"] < 1e-5
