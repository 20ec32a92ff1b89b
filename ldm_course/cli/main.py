"""`ldm-course` (also `python -m ldm_course`): train-vae, train-ldm, sample, reconstruct, evaluate, bench.

Presets: cpu-fast (minutes on a 2-core CPU), cpu-full (the shipped checkpoints), gpu (Colab).
Any setting can be overridden: --set steps=500 --set vae.base_channels=32.
"""

import argparse
import shlex
import sys
import time
from pathlib import Path

import torch

from ldm_course.cli import args as cli_args
from ldm_course.cli.args import count, non_negative, resolve_device, seed
from ldm_course.cli.models import ldm_path, ldm_vae, vae_path
from ldm_course.config import PRESETS, ldm_preset, override, vae_preset
from ldm_course.infra.checkpoint import WriteError
from ldm_course.infra.stops import TrainingStopped


def _data(args, cfg):
    """The built-in Twemoji train split, or the user's own folder of images (--data DIR)."""
    from ldm_course.data import image_folder, twemoji
    from ldm_course.infra.image_files import folder_summary

    labels = getattr(cfg, "labels", "category")  # only the LDM config chooses labels
    if args.data in (None, "twemoji"):
        return twemoji("train", size=cfg.size, labels=labels)
    if labels != "category":
        raise ValueError(
            f"labels={labels!r} exists only for the built-in Twemoji; a folder's labels are its "
            "subfolders: drop --set labels=... (or use --data twemoji)"
        )
    data = image_folder(args.data, size=cfg.size, resize_to_fit=args.resize)
    print(folder_summary(data, args.data))
    return data


def _train(args, preset, train_fn, *extra) -> None:
    """Shared by train-vae and train-ldm: config from preset + overrides, process group, summary."""
    from ldm_course.infra.distributed import setup_world, teardown

    cfg = override(preset(args.preset), args.set)
    cli_args.check_run_dir(args.run_dir)
    world = setup_world(resolve_device(args.device))
    _, history = train_fn(
        cfg,
        args.run_dir,
        *extra,
        data=_data(args, cfg),
        device=world.device,
        resume=args.resume,
        world=world,
    )
    teardown(world)
    if world.is_main:
        last = ", ".join(
            f"{k}={v[-1]:.4g}" for k, v in history.items() if k not in ("step", "seconds")
        )
        print(f"trained {cfg.steps} steps; last losses: {last}")


def cmd_train_vae(args) -> None:
    from ldm_course.training.train_vae import train_vae

    _train(args, vae_preset, train_vae)


def cmd_train_ldm(args) -> None:
    from functools import partial

    from ldm_course.pretrained import load_vae
    from ldm_course.training.train_ldm import train_ldm

    vae = load_vae(vae_path(args.vae))
    _train(args, ldm_preset, partial(train_ldm, vae_source=args.vae or "pretrained"), vae)


def _load_ldm(args):
    from ldm_course.pretrained import load_ldm

    return load_ldm(
        ldm_path(args.ldm),
        ldm_vae(args),
        device=resolve_device(args.device),
        check_vae=not args.force_vae,
    )


def cmd_sample(args) -> None:
    from ldm_course.course.viz import save_grid

    start = time.perf_counter()
    check_sample_options(args)
    cli_args.check_output(args.out, suffixes=cli_args.IMAGE_OUT)
    ldm = _load_ldm(args)
    cli_args.check_batch_fits(args.n, ldm.vae.cfg, ldm.image_size)
    y = None
    if args.label is not None:
        names = list(ldm.class_names)
        y = names.index(args.label) if args.label in names else _class_id(args.label, names)
    elif ldm.unet.cfg.num_classes and not args.unconditional:
        from ldm_course.data import classes_in_turn

        y = classes_in_turn(args.n, ldm.unet.cfg.num_classes)
    images = ldm.generate(
        args.n,
        steps=min(DDIM_STEPS, ldm.schedule.num_steps) if args.steps is None else args.steps,
        eta=args.eta,
        guidance_scale=args.guidance,
        y=y,
        sampler=args.sampler,
        generator=torch.Generator().manual_seed(args.seed),
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    save_grid(images, args.out, nrow=args.nrow)
    print(f"wrote {args.n} samples to {args.out} in {time.perf_counter() - start:.1f} s")


DDIM_STEPS = 50  # sample --steps when not given (or T, for a model trained with fewer)


def check_sample_options(args) -> None:
    """Options that cannot be honoured together are refused before the model loads."""
    if args.unconditional and args.label is not None:
        raise ValueError(
            f"--label {args.label} asks for one class, --unconditional for none; drop one of them"
        )
    if args.sampler == "ddpm" and args.steps is not None:
        raise ValueError(
            f"--steps {args.steps} does not apply to --sampler ddpm, which runs every step of the "
            "model's noise schedule; drop --steps, or use --sampler ddim for fewer steps"
        )


def _class_id(label: str, names: list[str]) -> int:
    if label.isdigit() and int(label) < len(names):
        return int(label)
    raise ValueError(
        f"unknown class {label!r}; choose an index below {len(names)} or one of {names}"
    )


def cmd_reconstruct(args) -> None:
    from ldm_course.course.viz import comparison_layout, save_grid
    from ldm_course.data import image_folder, twemoji
    from ldm_course.infra.image_files import folder_summary
    from ldm_course.metrics import psnr
    from ldm_course.pretrained import load_vae

    cli_args.check_output(args.out, suffixes=cli_args.IMAGE_OUT)
    vae = load_vae(vae_path(args.vae), device=resolve_device(args.device))
    if args.input == "twemoji-test":
        data = twemoji("test")
    else:
        data = image_folder(args.input, resize_to_fit=args.resize)
        print(folder_summary(data, args.input))
    cli_args.check_batch_fits(min(args.n, len(data)), vae.cfg, data.images.shape[-1])
    x = data.images[: args.n].to(vae.encoder.conv_in.weight.device)
    with torch.no_grad():
        recon = vae.decode(vae.encode(x).mode()).clamp(-1, 1)
    grid, nrow = comparison_layout(x.cpu(), recon.cpu())
    save_grid(grid, args.out, nrow=nrow)
    print(
        f"wrote {len(x)} originals + reconstructions to {args.out}; "
        f"mean PSNR {psnr(x.cpu(), recon.cpu()).mean():.2f} dB"
    )


def cmd_evaluate(args) -> None:
    from ldm_course.training.evaluate import evaluate

    cli_args.check_output(args.out, suffixes=(".json",))
    report = evaluate(
        vae_path=ldm_vae(args),
        unet_path=ldm_path(args.ldm),
        compare_vae=args.compare_vae,
        out=args.out,
        num_samples=args.num_samples,
        ddpm=not args.skip_ddpm,
        ddpm_samples=args.ddpm_samples,
        device=resolve_device(args.device),
        seed=args.seed,
    )
    print(report)


VERSION_HELP = "print the installed ldm-course version and exit"
SAMPLE_VAE_HELP = (
    "'pretrained' (the default; with --ldm RUN: the VAE that run trained on), "
    "'pretrained-adversarial' (the shipped decoder fine-tuned with a PatchGAN term) or a "
    "VAE run folder / .safetensors"
)
TRAIN_LDM_VAE_HELP = (
    "the VAE whose latents the U-Net learns: 'pretrained' (the default), "
    "'pretrained-adversarial' (same encoder, so the same latents) or a VAE run folder / "
    ".safetensors (recorded, so sample finds it)"
)
RECONSTRUCT_VAE_HELP = (
    "the VAE to encode and decode with: 'pretrained' (the default), 'pretrained-adversarial' "
    "or a VAE run folder / .safetensors"
)
IMAGE_OUT_HELP = f"the image grid to write ({', '.join(cli_args.IMAGE_OUT)})"


def package_version() -> str:
    """The installed distribution's version (importlib.metadata), as pip shows it."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ldm-course")
    except PackageNotFoundError:  # run from a source tree that was never installed
        from ldm_course import __version__

        return f"{__version__} (not installed)"


def build_parser() -> argparse.ArgumentParser:
    p = cli_args.Parser(prog="ldm-course", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    p.add_argument(
        "--version", action="version", version=f"%(prog)s {package_version()}", help=VERSION_HELP
    )

    def common(sp, vae_help: str | None = None):
        sp.add_argument(
            "--device", default="auto", help="auto (cuda, mps, cpu), cpu, cuda, cuda:1, mps"
        )
        if vae_help is not None:
            sp.add_argument("--vae", default=None, help=vae_help)
        return sp

    for name, fn, default_dir in (
        ("train-vae", cmd_train_vae, "runs/vae"),
        ("train-ldm", cmd_train_ldm, "runs/ldm"),
    ):
        sp = common(
            sub.add_parser(name, help=f"{name.replace('-', ' ')}; writes checkpoints to --run-dir"),
            TRAIN_LDM_VAE_HELP if name == "train-ldm" else None,
        )
        sp.add_argument("--preset", default="cpu-fast", help=f"one of {', '.join(PRESETS)}")
        sp.add_argument(
            "--set",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="override a setting, e.g. --set steps=500 (repeatable)",
        )
        sp.add_argument(
            "--run-dir",
            default=default_dir,
            help=f"folder for config.json, checkpoints and the model (default {default_dir}); "
            "a new run needs an empty or new folder, --resume continues the one there",
        )
        sp.add_argument(
            "--resume", action="store_true", help="continue from the run's last checkpoint"
        )
        sp.add_argument(
            "--data", default="twemoji", help="'twemoji' (built in) or a folder of your images"
        )
        sp.add_argument(
            "--resize", action="store_true", help="center-crop and resize images of another size"
        )
        sp.set_defaults(fn=fn)

    sp = common(sub.add_parser("sample", help="generate a grid of images"), SAMPLE_VAE_HELP)
    sp.add_argument(
        "--ldm",
        default="pretrained",
        help="'pretrained' (10 categories), 'pretrained-subcategory' (99 subcategories) "
        "or an LDM run folder / .safetensors",
    )
    sp.add_argument("--n", type=count, default=64, help="number of images (default 64)")
    sp.add_argument("--seed", type=seed, default=0, help="seed of the starting noise (default 0)")
    sp.add_argument(
        "--steps",
        type=count,
        default=None,
        help=f"DDIM steps (default {DDIM_STEPS}, or the model's T if fewer); DDPM always runs "
        "all of the model's T steps",
    )
    sp.add_argument(
        "--eta",
        type=non_negative,
        default=0.0,
        help="DDIM's noise: 0 deterministic (default), 1 as much as DDPM",
    )
    sp.add_argument(
        "--guidance",
        type=non_negative,
        default=3.0,
        help="classifier-free guidance scale w (default 3; 1 = no guidance)",
    )
    sp.add_argument(
        "--sampler",
        choices=("ddim", "ddpm"),
        default="ddim",
        help="ddim (default; --steps of them) or ddpm (all T steps)",
    )
    sp.add_argument(
        "--label", default=None, help="a category name or id (default: cycle through all)"
    )
    sp.add_argument(
        "--unconditional",
        action="store_true",
        help="sample the unconditional model (the null class); not with --label",
    )
    sp.add_argument(
        "--force-vae",
        action="store_true",
        help="decode with --vae even if the U-Net was trained on another VAE's latents",
    )
    sp.add_argument("--nrow", type=count, default=8, help="images per row of the grid (default 8)")
    sp.add_argument("--out", default="samples.png", help=IMAGE_OUT_HELP + " (default samples.png)")
    sp.set_defaults(fn=cmd_sample)

    sp = common(
        sub.add_parser("reconstruct", help="encode and decode images; write a comparison grid"),
        RECONSTRUCT_VAE_HELP,
    )
    sp.add_argument("--input", default="twemoji-test", help="'twemoji-test' or a folder of images")
    sp.add_argument(
        "--resize", action="store_true", help="center-crop and resize images of another size"
    )
    sp.add_argument("--n", type=count, default=16, help="number of images (default 16)")
    sp.add_argument(
        "--out",
        default="reconstructions.png",
        help=IMAGE_OUT_HELP + " (default reconstructions.png)",
    )
    sp.set_defaults(fn=cmd_reconstruct)

    sp = common(
        sub.add_parser("evaluate", help="metrics of the model card on the held-out test split"),
        SAMPLE_VAE_HELP,
    )
    sp.add_argument(
        "--ldm",
        default="pretrained",
        help="'pretrained', 'pretrained-subcategory' or an LDM run folder / .safetensors",
    )
    sp.add_argument(
        "--compare-vae",
        action="append",
        default=[],
        help="another VAE to report beside (repeatable), e.g. one trained without LPIPS",
    )
    sp.add_argument(
        "--num-samples",
        type=cli_args.sample_count,
        default=256,
        help="images per Frechet distance (>= 2; at most the test split's size, which is used "
        "when it is smaller)",
    )
    sp.add_argument(
        "--ddpm-samples",
        type=cli_args.sample_count,
        default=64,
        help="images (>= 2) for the DDPM row and the DDIM row beside it",
    )
    sp.add_argument("--skip-ddpm", action="store_true", help="skip the slow 1000-step DDPM row")
    sp.add_argument(
        "--seed", type=seed, default=0, help="seed of the picked images and samples (default 0)"
    )
    sp.add_argument(
        "--out",
        default="evaluation.json",
        help="the report, a .json file (default evaluation.json)",
    )
    sp.set_defaults(fn=cmd_evaluate)

    sp = sub.add_parser(
        "bench",
        help="benchmarks: latent vs pixel, vs diffusers, efficiency, quality (see --help)",
        add_help=False,
    )
    sp.set_defaults(fn=None)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["bench"]:
        from ldm_course.bench.run import main as bench_main

        return bench_main(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        args.fn(args)
    except TrainingStopped as stop:  # Ctrl-C or SIGTERM: fit saved the step it stopped at
        print(
            f"{_new_line()}ldm-course {args.command}: {stop.summary}; continue with: "
            f"{resume_command(argv)}",
            file=sys.stderr,
        )
        return stop.exit_code
    except KeyboardInterrupt:  # a second Ctrl-C, or one before training began
        print(
            f"{_new_line()}ldm-course {args.command}: interrupted{_resume_hint(args, argv)}",
            file=sys.stderr,
        )
        return 130
    except WriteError as err:  # a full disk: the previous files are whole
        print(f"ldm-course {args.command}: error: {err}{_resume_hint(args, argv)}", file=sys.stderr)
        return 2
    except (ValueError, OSError) as err:  # OSError: FileNotFoundError, PermissionError, full disk
        print(f"ldm-course {args.command}: error: {err}", file=sys.stderr)
        return 2
    return 0


def _new_line() -> str:
    """In a terminal, end the progress bar's line first."""
    return "\n" if sys.stderr.isatty() else ""


def resume_command(argv: list[str]) -> str:
    """The command that continues this training run: the same arguments, with --resume."""
    return shlex.join(["ldm-course", *argv, *([] if "--resume" in argv else ["--resume"])])


def _resume_hint(args, argv: list[str]) -> str:
    """'; continue with: ...' for a training run that has begun (config.json written), else ''."""
    run_dir = getattr(args, "run_dir", None)
    if run_dir is None:
        return " (no partial output was left)"
    if not (Path(run_dir) / "config.json").exists():
        return f" before {run_dir} held a run; start it again with the same command"
    return f"; the last checkpoint in {run_dir} is whole: continue with: {resume_command(argv)}"
