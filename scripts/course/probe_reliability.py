"""Replay issue 18's list (run folders, resume, image loading, numeric options) and print one
verdict a line: PASS when the problem is gone, FAIL (with what happened) when it is not.

    OMP_NUM_THREADS=1 python scripts/course/probe_reliability.py        # about a minute on one core

Every probe uses tiny settings (32x32 images, a few thousand weights, two steps) in a temporary
folder, and goes through the command line in this process (`ldm_course.cli.main`) or the public
API, so it also runs against older versions of the package (to show what was broken).
"""

import contextlib
import io
import os
import pickle
import shutil
import sys
import tempfile
import traceback
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")  # before tqdm is imported: it reads this once

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from ldm_course.cli.main import main  # noqa: E402

TINY = ["--set", "size=32", "--set", "batch_size=4", "--set", "log_every=1"]
TINY += ["--set", "sample_every=0", "--set", "warmup_steps=1", "--device", "cpu"]
VAE = [*TINY, "--set", "vae.base_channels=4", "--set", "vae.norm_groups=4"]
LDM = [*TINY, "--set", "unet.base_channels=16", "--set", "unet.num_res_blocks=1"]
LDM += ["--set", "unet.attention_levels=1"]


def cli(*args: str) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `ldm-course ARGS` run in this process."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as exit_:  # argparse
            code = exit_.code
        except Exception:  # a raw traceback: what the issue calls an unclear error
            traceback.print_exc()
            code = "traceback"
    return code, out.getvalue(), err.getvalue()


def refused(result, *needles: str) -> tuple[bool, str]:
    """Exit 2 with a message (containing the needles), no traceback."""
    code, _, err = result
    ok = code == 2 and "Traceback" not in err and all(n in err for n in needles)
    return ok, f"exit {code}: {err.strip().splitlines()[-1][:150] if err.strip() else '(silent)'}"


def image_dir(root: Path, seed: int = 0, n: int = 8) -> Path:
    rng = np.random.default_rng(seed)
    for i in range(n):
        path = root / ("ab"[i % 2]) / f"{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(path)
    return root


def train_vae(run: Path, data: Path, *settings: str, resume: bool = False):
    extra = [a for kv in settings for a in ("--set", kv)]
    args = ["train-vae", *VAE, "--set", "steps=2", *extra, "--data", str(data)]
    return cli(*args, "--run-dir", str(run), *(["--resume"] if resume else []))


def train_ldm(run: Path, vae: Path, data: Path, *, resume: bool = False):
    args = ["train-ldm", *LDM, "--set", "steps=2", "--vae", str(vae), "--data", str(data)]
    return cli(*args, "--run-dir", str(run), *(["--resume"] if resume else []))


def raises(fn, *needles: str) -> tuple[bool, str]:
    try:
        fn()
    except Exception as err:  # noqa: BLE001 (any clear error counts; the needles say which)
        text = f"{type(err).__name__}: {err}"
        return all(n in text for n in needles), text.splitlines()[0][:150]
    return False, "no error"


# ---- the probes, in the order ----


def p1_folder_without_checkpoint(tmp: Path):
    data, run = image_dir(tmp / "imgs"), tmp / "r1"
    train_vae(run, data)
    (run / "checkpoint.safetensors").unlink()
    before = (run / "model.safetensors").read_bytes()
    result = train_vae(run, data, "steps=3", "vae.base_channels=8", resume=True)
    ok, why = refused(result)
    return ok and (run / "model.safetensors").read_bytes() == before, why


def p2_atomic_images(tmp: Path):
    from ldm_course.course.viz import save_grid

    path = tmp / "grid.png"
    save_grid(torch.zeros(4, 3, 32, 32), path)
    before, real_save = path.read_bytes(), Image.Image.save

    def disk_full(self, fp, *args, **kwargs):
        open(fp, "wb").write(b"\x89PNG half")
        raise OSError(28, "No space left on device")

    Image.Image.save = disk_full
    try:
        ok, why = raises(lambda: save_grid(torch.zeros(4, 3, 32, 32), path), "No space")
    finally:
        Image.Image.save = real_save
    intact = path.read_bytes() == before
    return ok and intact, f"{why}; previous PNG {'intact' if intact else 'truncated'}"


def p3_partial_files(tmp: Path):
    data, run = image_dir(tmp / "imgs"), tmp / "r3"
    train_vae(run, data)
    junk = run / ".checkpoint.safetensors.killed.tmp"
    junk.write_bytes(b"\0" * 1_000_000)
    os.utime(junk, (0, 0))  # as if an earlier process, killed, had left it
    code, out, err = train_vae(run, data, resume=True)
    return not junk.exists() and "removed" in out, f"exit {code}; left: {junk.exists()}"


def p4_resume_other_inputs(tmp: Path):
    run, other = tmp / "r4", image_dir(tmp / "imgs4b", seed=1)
    train_vae(run, image_dir(tmp / "imgs"))
    ok_data, why_data = refused(train_vae(run, other, resume=True))
    vae, ldm = tmp / "v4", tmp / "l4"
    train_vae(vae, image_dir(tmp / "imgs"))
    train_ldm(ldm, vae, tmp / "imgs")
    shutil.rmtree(vae)
    train_vae(vae, tmp / "imgs", "seed=1")  # the VAE folder retrained meanwhile
    ok_vae, why_vae = refused(train_ldm(ldm, vae, tmp / "imgs", resume=True))
    return ok_data and ok_vae, f"other --data: {why_data} | retrained --vae: {why_vae}"


def p5_sample_uses_recorded_vae(tmp: Path):
    vae, ldm = tmp / "v5", tmp / "l5"
    train_vae(vae, image_dir(tmp / "imgs"))
    train_ldm(ldm, vae, tmp / "imgs")
    args = ["sample", "--ldm", str(ldm), "--n", "2", "--steps", "2", "--out", str(tmp / "s.png")]
    default = cli(*args, "--device", "cpu")[0]
    ok, why = refused(cli(*args, "--vae", "pretrained"))
    return ok and default == 0, f"default exit {default}; shipped --vae: {why}"


def p6_image_loading(tmp: Path):
    from ldm_course.data import image_folder, load_image

    notes = []
    grey = tmp / "grey16.png"
    Image.fromarray(np.full((8, 8), 32768, dtype=np.uint16)).save(grey)
    mean = load_image(grey, 8).mean().item()
    notes.append(f"16-bit mid-grey -> {mean:+.2f} (want 0)")
    folder = image_dir(tmp / "imgs6")
    image_dir(folder / ".ipynb_checkpoints", n=2)
    classes = list(image_folder(folder, size=32).class_names)
    notes.append(f"classes {classes}")
    os.symlink("loop.png", folder / "a" / "loop.png")
    looping = raises(lambda: image_folder(folder, size=32), "loop.png")
    os.remove(folder / "a" / "loop.png")
    notes.append(f"looping link: {looping[1][:60]}")
    rotated = np.zeros((8, 16, 3), dtype=np.uint8)
    rotated[:, :8] = 255
    img = Image.fromarray(rotated)
    exif = img.getexif()
    exif[0x0112] = 6
    img.save(tmp / "r.jpg", exif=exif, quality=100)
    upright = load_image(tmp / "r.jpg", 8, resize_to_fit=True)[:, :2].mean().item() > 0.9
    notes.append(f"EXIF orientation {'applied' if upright else 'ignored'}")
    code, out, _ = train_vae(tmp / "r6", folder)
    listed = "classes: a (4), b (4)" in out
    notes.append(f"class list {'printed' if listed else 'not printed'}")
    ok = abs(mean) < 0.02 and classes == ["a", "b"] and looping[0] and upright and listed
    return ok, "; ".join(notes)


def p7_numeric_settings(tmp: Path):
    data, verdicts = image_dir(tmp / "imgs"), []
    for setting in ("steps=-5", "perceptual_weight=-1", "kl_weight=-1", "lr=nan", "lr=inf"):
        ok, _ = refused(train_vae(tmp / f"r7-{setting}", data, setting))
        verdicts.append((ok and not (tmp / f"r7-{setting}").exists(), setting))
    bad = [s for ok, s in verdicts if not ok]
    return not bad, f"accepted: {bad}" if bad else "all refused before the run folder exists"


def p8_reconstruct_and_slerp(tmp: Path):
    from ldm_course.latents import slerp

    out = tmp / "rec.png"
    cli("reconstruct", "--n", "9", "--device", "cpu", "--out", str(out))
    grid = np.asarray(Image.open(out)).astype(float) / 255  # (H, W, 3)
    rows, cols = (grid.shape[0] - 2) // 66, (grid.shape[1] - 2) // 66
    aligned = rows % 2 == 0
    if aligned:
        for i in range(9):
            r, c = divmod(i, cols)
            top = grid[2 + 66 * r : 66 * (r + 1), 2 + 66 * c : 66 * (c + 1)]
            low = grid[
                2 + 66 * (r + rows // 2) : 66 * (r + rows // 2 + 1), 2 + 66 * c : 66 * (c + 1)
            ]
            aligned &= np.abs(top - low).mean() < 0.08
    v = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    opposite = raises(lambda: slerp(v, -v, 0.5), "opposite")
    zero = raises(lambda: slerp(torch.zeros_like(v), v, 0.5), "zero")
    ok = aligned and opposite[0] and zero[0]
    return (
        ok,
        f"reconstruct --n 9 {'aligned' if aligned else 'misaligned'}; slerp(v, -v): {opposite[1][:50]}; slerp(0, v): {zero[1][:40]}",
    )


def p9_resume_missing_folder(tmp: Path):
    ok, why = refused(train_vae(tmp / "nothing", image_dir(tmp / "imgs"), resume=True))
    return ok and not (tmp / "nothing").exists(), why


def p10_unwritable(tmp: Path):
    data = image_dir(tmp / "imgs")
    run_ok, run_why = refused(train_vae(Path("/proc/r"), data))  # read-only even for root
    out_ok, out_why = refused(cli("sample", "--n", "1", "--out", "/proc/s.png"))
    real = shutil.disk_usage
    shutil.disk_usage = lambda p: real(p)._replace(free=1000)
    try:
        full_ok, full_why = refused(train_vae(tmp / "r10", data), "free")
    finally:
        shutil.disk_usage = real
    full_ok &= not (tmp / "r10" / "checkpoint.safetensors").exists()
    return (
        run_ok and out_ok and full_ok,
        f"run dir: {run_why} | --out: {out_why} | full disk: {full_why}",
    )


def p11_counts(tmp: Path):
    data, bad = image_dir(tmp / "imgs"), []
    ok, _ = refused(train_vae(tmp / "r11", data, "batch_size=0"))
    if not ok or (tmp / "r11").exists():
        bad.append("batch_size=0")
    out = str(tmp / "s.png")
    for args in (
        ["sample", "--n", "0"],
        ["sample", "--n", "-3"],
        ["sample", "--nrow", "0"],
        ["reconstruct", "--n", "0"],
        ["sample", "--n", str(10**9)],
    ):
        if not refused(cli(*args, "--device", "cpu", "--out", out))[0]:
            bad.append(" ".join(args[1:]))
    return not bad, f"accepted or unclear: {bad}" if bad else "all refused up front"


def p12_clear_errors(tmp: Path):
    from ldm_course.data import load_image
    from ldm_course.perceptual import LPIPS
    from ldm_course.pretrained import load_vae
    from ldm_course.vae import VAE

    checks = {}
    if not torch.cuda.is_available():
        checks["--device cuda"] = refused(cli("sample", "--n", "1", "--device", "cuda"), "CUDA")[0]
    big = tmp / "big.png"
    Image.fromarray(np.zeros((64, 64, 3), dtype=np.uint8)).save(big)
    limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, 1000
    try:
        checks["bomb"] = raises(lambda: load_image(big, 64), "big.png", "too large")[0]
    finally:
        Image.MAX_IMAGE_PIXELS = limit
    vae = VAE()
    for dtype in (torch.float64, torch.float16):
        x = torch.zeros(1, 3, 64, 64, dtype=dtype)
        checks[f"VAE.encode {dtype}"] = raises(lambda x=x: vae.encode(x), "convert")[0]
    x = torch.zeros(1, 3, 64, 64)
    checks["LPIPS float64"] = raises(lambda: LPIPS()(x.double(), x), "convert")[0]
    (tmp / "vae.pt").write_bytes(pickle.dumps({"w": torch.zeros(1)}))
    checks["pickle .pt"] = raises(lambda: load_vae(tmp / "vae.pt"), "not a safetensors")[0]
    vae_run = tmp / "v12"
    train_vae(vae_run, image_dir(tmp / "imgs"))
    ok, _ = refused(train_ldm(vae_run, vae_run, tmp / "imgs"), "'vae' run")
    checks["VAE run as train-ldm --run-dir"] = ok and not (vae_run / "latents.safetensors").exists()
    (tmp / "file").write_text("x")
    checks["--run-dir a file"] = refused(train_vae(tmp / "file", tmp / "imgs"))[0]
    out = f"{tmp}/dir/"
    checks["--out dir/"] = refused(cli("sample", "--n", "1", "--out", out))[0]
    for value in ("-1", str(2**64)):
        checks[f"--seed {value}"] = refused(cli("sample", "--n", "1", "--seed", value))[0]
    bad = [k for k, ok in checks.items() if not ok]
    return not bad, f"unclear: {bad}" if bad else f"{len(checks)} cases, each one clear line"


def main_() -> int:
    torch.set_num_threads(1)
    probes = [v for k, v in sorted(globals().items()) if k.startswith("p") and k[1].isdigit()]
    probes.sort(key=lambda fn: int(fn.__name__[1:].split("_")[0]))
    failed = 0
    for probe in probes:
        with tempfile.TemporaryDirectory() as tmp:
            try:
                ok, detail = probe(Path(tmp))
            except Exception as err:  # noqa: BLE001 (a probe that crashes is a FAIL, not a stop)
                ok, detail = False, f"probe crashed: {type(err).__name__}: {err}"[:200]
        failed += not ok
        number, name = probe.__name__[1:].split("_", 1)
        print(f"{number:>2} {'PASS' if ok else 'FAIL'} {name.replace('_', ' ')}: {detail}")
        sys.stdout.flush()
    print(f"{len(probes) - failed}/{len(probes)} pass")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main_())
