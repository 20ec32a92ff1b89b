"""Stable Diffusion's autoencoder (diffusers' AutoencoderKL) in the course's own VAE class, and back.

The course's VAE is SD's autoencoder in miniature: the same ResBlocks, strided downsampling,
nearest-neighbour upsampling, single-head mid-block attention, GroupNorm (eps 1e-6) and diagonal
Gaussian posterior. With `VAEConfig(base_channels=128, channel_mult=(1, 2, 4, 4),
num_res_blocks=2, norm_groups=32, downsample_padding="right_bottom", post_quant_conv=True)` it
holds SD v1's weights exactly. What differs, and how each piece maps (docs/sd_vae.md):

1. Names. Ours `encoder.down[i].blocks[j]`, `.downsample.conv`, `encoder.mid.res1/attn/res2`,
   `norm_out`, ResBlock `skip`; theirs `encoder.down_blocks.i.resnets.j`, `.downsamplers.0.conv`,
   `encoder.mid_block.resnets.0/attentions.0/resnets.1`, `conv_norm_out`, `conv_shortcut`.

2. Attention. Ours computes q, k, v with one 1x1 convolution `qkv` (3C, C, 1, 1) on (B, C, H, W);
   theirs with three Linear layers `to_q`, `to_k`, `to_v` (C, C) on (B, HW, C). A 1x1
   convolution is that Linear applied at every position, so

       qkv.weight = cat([to_q.weight, to_k.weight, to_v.weight])[:, :, None, None]    (3C, C, 1, 1)
       qkv.bias   = cat([to_q.bias, to_k.bias, to_v.bias])                            (3C,)

   in the order SelfAttention splits it ("b (three n d) h w", n = 1 head); `proj` is `to_out.0`.

3. quant_conv, a 1x1 convolution (2C_z, 2C_z) after the encoder's last 3x3 convolution, is
   folded into that convolution. Both are linear and quant_conv mixes channels only, at each
   position, after conv_out's padding has been applied, so with Q = quant_conv.weight[:, :, 0, 0]:

       quant_conv(conv_out(h)) = Q (W * h + b) + q = (Q W) * h + (Q b + q)
       conv_out.weight <- einsum("oc,cikl->oikl", Q, W)      (2C_z, C, 3, 3)
       conv_out.bias   <- Q b + q                            (2C_z,)

   exact in exact arithmetic at every pixel, border included (computed in float64, then
   rounded once to float32). Going back, quant_conv is written as the identity.

4. post_quant_conv, a 1x1 convolution (C_z, C_z) on z before the decoder's 3x3 conv_in, is *not*
   folded: conv_in pads post_quant_conv's output with zeros, but folded into conv_in's taps the
   bias p would be seen in the padding too: (W * pad(P z + p))(border) != ((W P) * pad(z) +
   sum_taps W p)(border). So the VAE keeps it as a layer of its own (`post_quant_conv=True` in
   VAEConfig; the course's own VAE has none).

5. Downsampling. Ours pads one pixel on every side before each stride-2 convolution; SD's
   (LDM's, diffusers' Downsample2D with padding=0) pads right and bottom only. Different
   functions of the input, so SD's layout sets `downsample_padding="right_bottom"`.

The course's own VAEs (downsample_padding="all_sides") have no AutoencoderKL counterpart:
vae_to_diffusers refuses them rather than change what they compute.
"""

import re
import warnings
from pathlib import Path

import torch

from ldm_course.config import VAEConfig
from ldm_course.vae import VAE


def _autoencoder_kl():
    """diffusers' AutoencoderKL class; diffusers is an optional dependency of the course."""
    try:
        from diffusers import AutoencoderKL
    except ImportError:
        raise ImportError(
            "Stable Diffusion's VAE is read with diffusers, which is not installed; "
            "pip install diffusers (Colab: !pip install diffusers)"
        ) from None
    return AutoencoderKL


def sd_vae_config(config) -> VAEConfig:
    """The VAEConfig that holds an AutoencoderKL with this diffusers `config`; a clear error for a
    layout the course's VAE cannot hold (other block types, activations, channel widths)."""
    widths = tuple(config.block_out_channels)
    problems = []
    if set(config.down_block_types) != {"DownEncoderBlock2D"}:
        problems.append(f"down_block_types {config.down_block_types} (only DownEncoderBlock2D)")
    if set(config.up_block_types) != {"UpDecoderBlock2D"}:
        problems.append(f"up_block_types {config.up_block_types} (only UpDecoderBlock2D)")
    if config.act_fn != "silu":
        problems.append(f"act_fn {config.act_fn!r} (only 'silu')")
    if config.out_channels != config.in_channels:
        problems.append(f"{config.in_channels} channels in but {config.out_channels} out")
    if any(w % widths[0] for w in widths):
        problems.append(f"block_out_channels {widths} (each a multiple of the first)")
    if problems:
        raise ValueError(
            "this AutoencoderKL does not fit the course's VAE: "
            + "; ".join(problems)
            + ". Only Stable Diffusion's layout converts (see docs/sd_vae.md)"
        )
    return VAEConfig(
        in_channels=config.in_channels,
        latent_channels=config.latent_channels,
        base_channels=widths[0],
        channel_mult=tuple(w // widths[0] for w in widths),
        num_res_blocks=config.layers_per_block,
        norm_groups=config.norm_num_groups,
        mid_attention=getattr(config, "mid_block_add_attention", True),
        downsample_padding="right_bottom",
        post_quant_conv=bool(getattr(config, "use_post_quant_conv", True)),
    )


def _resblock(ours: str, theirs: str, in_ch: int, out_ch: int) -> list[tuple[str, str]]:
    layers = ["norm1", "conv1", "norm2", "conv2"]
    pairs = [(f"{ours}.{n}", f"{theirs}.{n}") for n in layers]
    return pairs + ([(f"{ours}.skip", f"{theirs}.conv_shortcut")] if in_ch != out_ch else [])


def _mid(ours: str, theirs: str, width: int, attention: bool) -> list[tuple[str, str]]:
    pairs = _resblock(f"{ours}.res1", f"{theirs}.resnets.0", width, width)
    pairs += _resblock(f"{ours}.res2", f"{theirs}.resnets.1", width, width)
    if attention:
        pairs += [
            (f"{ours}.attn.norm", f"{theirs}.attentions.0.group_norm"),
            (f"{ours}.attn.proj", f"{theirs}.attentions.0.to_out.0"),
        ]
    return pairs


def module_pairs(cfg: VAEConfig) -> list[tuple[str, str]]:
    """(our module, diffusers' module) for every layer whose weight and bias copy as they are
    (1x1 proj <-> Linear to_out.0 up to a reshape); attention's qkv and quant_conv are the two
    layers that are not copied one to one (module docstring, items 2 and 3)."""
    widths = [cfg.base_channels * m for m in cfg.channel_mult]
    last = len(widths) - 1
    pairs = [("encoder.conv_in", "encoder.conv_in")]
    prev = widths[0]
    for i, w in enumerate(widths):
        for j in range(cfg.num_res_blocks):
            ours, theirs = f"encoder.down.{i}.blocks.{j}", f"encoder.down_blocks.{i}.resnets.{j}"
            pairs += _resblock(ours, theirs, prev if j == 0 else w, w)
        if i < last:
            pairs.append(
                (
                    f"encoder.down.{i}.downsample.conv",
                    f"encoder.down_blocks.{i}.downsamplers.0.conv",
                )
            )
        prev = w
    pairs += _mid("encoder.mid", "encoder.mid_block", prev, cfg.mid_attention)
    pairs.append(("encoder.norm_out", "encoder.conv_norm_out"))
    if cfg.post_quant_conv:
        pairs.append(("decoder.post_quant_conv", "post_quant_conv"))
    pairs.append(("decoder.conv_in", "decoder.conv_in"))
    pairs += _mid("decoder.mid", "decoder.mid_block", widths[-1], cfg.mid_attention)
    prev = widths[-1]
    for i, w in enumerate(widths[::-1]):
        for j in range(cfg.num_res_blocks + 1):
            ours, theirs = f"decoder.up.{i}.blocks.{j}", f"decoder.up_blocks.{i}.resnets.{j}"
            pairs += _resblock(ours, theirs, prev if j == 0 else w, w)
        if i < last:
            pairs.append(
                (f"decoder.up.{i}.upsample.conv", f"decoder.up_blocks.{i}.upsamplers.0.conv")
            )
        prev = w
    return pairs + [
        ("decoder.norm_out", "decoder.conv_norm_out"),
        ("decoder.conv_out", "decoder.conv_out"),
    ]


def _attention_prefixes(cfg: VAEConfig) -> list[tuple[str, str]]:
    if not cfg.mid_attention:
        return []
    return [(f"{p}.mid.attn", f"{p}.mid_block.attentions.0") for p in ("encoder", "decoder")]


def vae_from_diffusers(autoencoder_kl) -> VAE:
    """diffusers' AutoencoderKL -> the course's VAE computing the same function (float32, eval, CPU).

    encode(x).mean / .logvar equal autoencoder_kl.encode(x).latent_dist.mean / .logvar, and
    decode(z) equals autoencoder_kl.decode(z).sample, up to float rounding (tests/test_sd_vae.py
    measures the differences; docs/sd_vae.md lists them)."""
    AutoencoderKL = _autoencoder_kl()

    if not isinstance(autoencoder_kl, AutoencoderKL):
        raise ValueError(
            f"expected a diffusers AutoencoderKL, got {type(autoencoder_kl).__name__}; load one "
            "with AutoencoderKL.from_pretrained(...) or use load_sd_vae(name_or_path)"
        )
    cfg = sd_vae_config(autoencoder_kl.config)
    theirs = {k: v.detach().double() for k, v in autoencoder_kl.state_dict().items()}
    ours = {}
    for mine, other in module_pairs(cfg):
        for p in ("weight", "bias"):
            ours[f"{mine}.{p}"] = theirs[f"{other}.{p}"]
    for mine, other in _attention_prefixes(cfg):
        weights = [theirs[f"{other}.to_{n}.weight"] for n in "qkv"]  # 3 x (C, C)
        biases = [theirs[f"{other}.to_{n}.bias"] for n in "qkv"]  # 3 x (C,)
        ours[f"{mine}.qkv.weight"] = torch.cat(weights)[:, :, None, None]  # (3C, C, 1, 1)
        ours[f"{mine}.qkv.bias"] = torch.cat(biases)  # (3C,)
        ours[f"{mine}.proj.weight"] = ours[f"{mine}.proj.weight"][:, :, None, None]  # (C, C, 1, 1)
    weight, bias = theirs["encoder.conv_out.weight"], theirs["encoder.conv_out.bias"]
    if getattr(autoencoder_kl.config, "use_quant_conv", True):
        q = theirs["quant_conv.weight"][:, :, 0, 0]  # (2C_z, 2C_z)
        weight = torch.einsum("oc,cikl->oikl", q, weight)  # (2C_z, C, 3, 3)
        bias = q @ bias + theirs["quant_conv.bias"]  # (2C_z,)
    ours["encoder.conv_out.weight"], ours["encoder.conv_out.bias"] = weight, bias
    vae = VAE(cfg)
    vae.load_state_dict({k: v.float() for k, v in ours.items()}, strict=True)
    return vae.eval()


def autoencoder_kl_for(
    cfg: VAEConfig, *, quant_conv: bool, post_quant_conv: bool, sample_size: int | None = None
):
    """A randomly initialised AutoencoderKL with the layout of `cfg`: one Down/UpDecoderBlock2D
    per level, layers_per_block = num_res_blocks, the same widths, groups and mid attention."""
    AutoencoderKL = _autoencoder_kl()

    n = len(cfg.channel_mult)
    extra = {} if sample_size is None else {"sample_size": sample_size}
    return AutoencoderKL(
        in_channels=cfg.in_channels,
        out_channels=cfg.in_channels,
        down_block_types=("DownEncoderBlock2D",) * n,
        up_block_types=("UpDecoderBlock2D",) * n,
        block_out_channels=tuple(cfg.base_channels * m for m in cfg.channel_mult),
        layers_per_block=cfg.num_res_blocks,
        act_fn="silu",
        latent_channels=cfg.latent_channels,
        norm_num_groups=cfg.norm_groups,
        use_quant_conv=quant_conv,
        use_post_quant_conv=post_quant_conv,
        mid_block_add_attention=cfg.mid_attention,
        **extra,
    )


def vae_to_diffusers(vae: VAE):
    """The course's VAE -> diffusers' AutoencoderKL computing the same function (float32, eval, CPU).

    quant_conv is the identity (the encoder's conv_out already holds it, module docstring item 3);
    post_quant_conv is there when the VAE has one. Only a VAE with SD's downsampling
    (downsample_padding="right_bottom") converts."""
    cfg = vae.cfg
    if cfg.downsample_padding != "right_bottom":
        raise ValueError(
            f"this VAE pads its downsampling on all sides (downsample_padding="
            f"{cfg.downsample_padding!r}), which AutoencoderKL cannot express; only a VAE with "
            "Stable Diffusion's layout (downsample_padding='right_bottom', e.g. one from "
            "vae_from_diffusers) converts"
        )
    autoencoder_kl = autoencoder_kl_for(cfg, quant_conv=True, post_quant_conv=cfg.post_quant_conv)
    ours = {k: v.detach().float().cpu() for k, v in vae.state_dict().items()}
    theirs = {}
    for mine, other in module_pairs(cfg):
        for p in ("weight", "bias"):
            theirs[f"{other}.{p}"] = ours[f"{mine}.{p}"]
    for mine, other in _attention_prefixes(cfg):
        for p in ("weight", "bias"):
            parts = ours[f"{mine}.qkv.{p}"].chunk(3)  # (3C, ...) -> 3 x (C, ...)
            for name, part in zip("qkv", parts, strict=True):
                theirs[f"{other}.to_{name}.{p}"] = part.flatten(1) if p == "weight" else part
        theirs[f"{other}.to_out.0.weight"] = ours[f"{mine}.proj.weight"].flatten(1)  # (C, C)
    theirs["encoder.conv_out.weight"] = ours["encoder.conv_out.weight"]
    theirs["encoder.conv_out.bias"] = ours["encoder.conv_out.bias"]
    z2 = 2 * cfg.latent_channels
    theirs["quant_conv.weight"] = torch.eye(z2)[:, :, None, None]  # (2C_z, 2C_z, 1, 1)
    theirs["quant_conv.bias"] = torch.zeros(z2)
    autoencoder_kl.load_state_dict(theirs, strict=True)
    return autoencoder_kl.eval()


def load_sd_vae(name_or_path: str | Path, *, device: torch.device | str = "cpu") -> VAE:
    """Stable Diffusion's VAE, read by diffusers' own loader (AutoencoderKL.from_pretrained), in
    the course's VAE class: float32, eval mode, frozen.

    name_or_path: a local diffusers folder (a VAE folder with config.json, or a pipeline folder
    with model_index.json, whose vae/ subfolder is read), or a Hugging Face Hub name: a VAE repo
    such as "stabilityai/sd-vae-ft-mse" or a pipeline such as "CompVis/stable-diffusion-v1-4"
    (its "vae" subfolder). Hub weights are downloaded once into the Hugging Face cache; where the
    Hub cannot be reached and the cache lacks them, one OSError line says where they come from."""
    AutoencoderKL = _autoencoder_kl()

    path = Path(name_or_path)
    if path.exists():
        if (path / "model_index.json").is_file():
            autoencoder_kl = AutoencoderKL.from_pretrained(
                path, subfolder="vae", low_cpu_mem_usage=False
            )
        elif (path / "config.json").is_file():
            autoencoder_kl = AutoencoderKL.from_pretrained(path, low_cpu_mem_usage=False)
        else:
            raise ValueError(
                f"{path} holds neither config.json (a diffusers VAE folder) nor model_index.json "
                "(a pipeline folder with vae/); save one with AutoencoderKL.save_pretrained(path)"
            )
    else:
        name = str(name_or_path)
        if not re.fullmatch(r"[\w.-]+/[\w.-]+", name):
            raise ValueError(
                f"{name!r} is not a folder here nor a Hub name; give a diffusers folder or a "
                "Hub name such as 'stabilityai/sd-vae-ft-mse'"
            )
        autoencoder_kl = _from_hub(AutoencoderKL, name)
    vae = vae_from_diffusers(autoencoder_kl)
    return vae.to(device).requires_grad_(False)


def _from_hub(autoencoder_cls, name: str):
    """Ask the Hub once which file the repo holds (a VAE's config.json, or a pipeline's
    vae/config.json), then read it with diffusers; without the Hub, read the local cache; if
    neither works, one line naming where the weights come from and why they could not be read."""
    from huggingface_hub import constants, model_info

    cache = constants.HF_HUB_CACHE
    try:
        if constants.HF_HUB_OFFLINE:
            raise OSError("HF_HUB_OFFLINE is set")
        files = {s.rfilename for s in model_info(name, timeout=10).siblings}
    except Exception as err:  # no network, a proxy, a wrong or gated name: the cache may hold it
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
        for subfolder in (None, "vae"):
            try:
                with (
                    warnings.catch_warnings()
                ):  # huggingface_hub's, about an argument diffusers passes
                    warnings.filterwarnings("ignore", message=".*local_dir_use_symlinks")
                    return autoencoder_cls.from_pretrained(
                        name, subfolder=subfolder, cache_dir=cache, local_files_only=True,
                        low_cpu_mem_usage=False,
                    )  # fmt: skip
            except OSError:
                pass
        raise OSError(
            f"Stable Diffusion's VAE could not be loaded: its weights come from "
            f"https://huggingface.co/{name}, which could not be read from here ({reason}), and "
            "they are not in the local Hugging Face cache (HF_HUB_CACHE, by default "
            "~/.cache/huggingface/hub); run online (Colab, a laptop) or pass a local diffusers folder"
        ) from None
    if "config.json" in files:
        subfolder = None
    elif "vae/config.json" in files:
        subfolder = "vae"
    else:
        raise ValueError(
            f"https://huggingface.co/{name} holds neither config.json nor vae/config.json, so it "
            "is not a diffusers VAE or pipeline; give one such as 'stabilityai/sd-vae-ft-mse'"
        )
    return autoencoder_cls.from_pretrained(
        name, subfolder=subfolder, cache_dir=cache, low_cpu_mem_usage=False
    )
