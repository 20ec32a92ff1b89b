"""Checkpoints: safetensors tensors with a JSON config beside them, always written atomically.

A run folder holds
    config.json             the training config (what `--resume` checks against)
    checkpoint.safetensors  model, EMA and optimizer tensors; step and history in its metadata
    model.safetensors       inference weights only (what `ldm_course.pretrained` loads)
Every file is written to a temporary name in the same folder, flushed, then renamed over the old
one (`os.replace` is atomic on POSIX and Windows), so a kill mid-write never loses the last good file.
The temporary name is the project's own, `.<name>.ldm-course-<pid>.<random>.tmp`: the writer's
process id says when it is stale (its writer died), and no file of the user's matches it.
"""

import json
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

STARTED = time.time()  # when this process imported the package
TEMP = "ldm-course"  # the mark in every temporary name (TEMP_NAME below)
# .<target name>.ldm-course-<writer pid>.<mkstemp's random part>.tmp
TEMP_NAME = re.compile(rf"^\.(?P<target>.+)\.{TEMP}-(?P<pid>\d+)\.[A-Za-z0-9_]+\.tmp$")


class WriteError(OSError):
    """A file could not be written (full disk, no permission); the message is one line."""


def atomic_write(path: Path, write) -> None:
    """Call write(tmp_path), then rename tmp_path to path: every file the project writes goes
    through here, so a kill or a full disk mid-write leaves the previous file whole. Temporaries
    of `path` that a killed writer left (stale_temporaries) are removed first, with a note."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder; give a file name such as {path / 'out.png'}")
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(path)
        prefix = f".{path.name}.{TEMP}-{os.getpid()}."
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=prefix, suffix=".tmp")
        os.close(fd)
        write(Path(tmp))
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; results are meant to be shared
        os.replace(tmp, path)
    except (OSError, SafetensorError) as err:  # safetensors reports a full disk as its own error
        # safetensors: 'Error while serializing: IoError(Os { ..., message: "No space left ..." })'
        said = re.search(r'message: "([^"]+)"', str(err))
        reason = getattr(err, "strerror", None) or (said[1] if said else str(err))
        raise WriteError(
            f"cannot write {path} ({reason}; {free_space(path.parent)} free on its disk); free "
            f"disk space or fix the folder's permissions (any previous {path.name} is intact)"
        ) from err
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.remove(tmp)


def free_space(folder: Path) -> str:
    """'123 MB' free on the disk of `folder` (or of its nearest existing parent)."""
    probe = Path(folder)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        return f"{shutil.disk_usage(probe).free / 1e6:.0f} MB"
    except OSError:
        return "unknown space"


def writer_alive(pid: int) -> bool:
    """Whether process `pid` runs (on this machine); a reused pid counts as alive (keep the file)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it exists, under another user
        return True
    return True


def stale_temporaries(folder: Path, target: str | None = None) -> list[Path]:
    """The project's temporaries in `folder` (of the file `target`, or of any) whose writer process
    is dead and that are older than this process (another machine's rank, on a shared disk, could
    have a pid that means nothing here). A user's own `.notes.tmp` never matches TEMP_NAME."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    stale = []
    for p in folder.iterdir():
        m = TEMP_NAME.match(p.name)
        if m is None or (target is not None and m["target"] != target):
            continue
        try:
            old = p.is_file() and p.stat().st_mtime < STARTED
        except OSError:  # removed meanwhile
            continue
        if old and not writer_alive(int(m["pid"])):
            stale.append(p)
    return sorted(stale)


def remove_stale_temporaries(path: Path) -> None:
    """Before writing `path`: remove what killed writes of it left (e.g. `sample --out s.png`)."""
    stale = stale_temporaries(path.parent, path.name)
    for p in stale:
        p.unlink(missing_ok=True)
    if stale:
        print(
            f"removed {len(stale)} temporary files that killed writes of {path} left",
            file=sys.stderr,
        )


def save_json(path: Path, data: dict) -> None:
    atomic_write(path, lambda p: p.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n"))


def load_json(path: Path) -> dict:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"{path} does not exist; is this a run folder written by ldm-course?"
        )
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err}); the file is damaged") from err


def save_tensors(
    path: Path, tensors: dict[str, torch.Tensor], metadata: dict | None = None
) -> None:
    """safetensors file with an optional JSON-able metadata dict (stored under the key 'json')."""
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    meta = {"json": json.dumps(metadata or {})}
    atomic_write(path, lambda p: save_file(tensors, str(p), metadata=meta))


def load_tensors(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """Inverse of `save_tensors`, with clear errors for a missing or truncated file, and a file
    holding nan or inf (a diverged training's weights) refused, naming the tensor."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist; train first or check the path")
    if path.is_dir():
        raise IsADirectoryError(f"checkpoint {path} is a folder; give a .safetensors file in it")
    foreign = other_format(path)
    if foreign:
        raise ValueError(
            f"{path} is {foreign}, not a safetensors file; ldm_course never unpickles (that can "
            "run code). If you trust its source, convert it: safetensors.torch.save_file("
            "torch.load(path, weights_only=True), 'model.safetensors'); for ldm_course models, use "
            "the model.safetensors of the run folder, which also records the config"
        )
    try:
        # clone: fresh, aligned storage. Tensors viewing the file's buffer at an arbitrary offset
        # take other SIMD paths in some kernels and differ in the last bit, breaking exact resume.
        tensors = {k: v.clone() for k, v in load_file(str(path)).items()}
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {}).get("json", "{}"))
    except (SafetensorError, OSError, ValueError) as err:
        raise ValueError(
            f"checkpoint {path} is damaged or truncated ({err}); "
            "restore it or retrain (a partial download is the usual cause)"
        ) from err
    bad = non_finite(tensors)
    if bad:
        raise ValueError(
            f"{path} holds values that are not finite (nan or inf) in {bad[0]!r}"
            + (f" and {len(bad) - 1} other tensors" if len(bad) > 1 else "")
            + ": most likely written by a training that diverged, so it is not loaded; "
            "use an earlier file, or train again with a lower lr"
        )
    return tensors, meta


def non_finite(tensors: dict[str, torch.Tensor]) -> list[str]:
    """Names of the floating-point tensors holding a nan or an inf (in the order given)."""
    return [k for k, v in tensors.items() if v.is_floating_point() and not torch.isfinite(v).all()]


def other_format(path: Path) -> str | None:
    """Name the format of a file that is clearly not safetensors (which starts with an 8-byte
    header length, then '{'); None when it may be one (then a damaged one is reported as such)."""
    with open(path, "rb") as f:
        head = f.read(9)
    if head.startswith(b"PK\x03\x04"):
        return "a zip archive (the format of torch.save: .pt, .pth, .ckpt)"
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "a Python pickle (an older torch.save .pt / .ckpt)"
    return None


def load_weights(model: nn.Module, tensors: dict[str, torch.Tensor], *, source: str) -> None:
    """load_state_dict with a message that says which config to fix when shapes or keys differ."""
    own = model.state_dict()
    missing = sorted(set(own) - set(tensors))
    unexpected = sorted(set(tensors) - set(own))
    wrong = [k for k in own if k in tensors and own[k].shape != tensors[k].shape]
    if missing or unexpected or wrong:
        detail = []
        if missing:
            detail.append(f"missing {len(missing)} keys (e.g. {missing[0]})")
        if unexpected:
            detail.append(f"unexpected {len(unexpected)} keys (e.g. {unexpected[0]})")
        if wrong:
            k = wrong[0]
            detail.append(
                f"{len(wrong)} shape mismatches (e.g. {k}: file {tuple(tensors[k].shape)} "
                f"vs model {tuple(own[k].shape)})"
            )
        raise ValueError(
            f"weights in {source} do not match the model config: {'; '.join(detail)}. "
            "Build the model from the config.json saved beside the weights."
        )
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in tensors.items()})


def optimizer_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Optimizer state -> flat tensors ('opt.<param>.<name>') + JSON-able hyper-parameters."""
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for pid, state in sd["state"].items():
        for name, value in state.items():
            if torch.is_tensor(value):
                tensors[f"opt.{pid}.{name}"] = value
            else:
                scalars[f"{pid}.{name}"] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def load_optimizer(
    opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict
) -> None:
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("opt."):
            _, pid, name = key.split(".", 2)
            state.setdefault(int(pid), {})[name] = value
    for key, value in meta["scalars"].items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = value
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
