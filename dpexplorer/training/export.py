"""Training checkpoint → shipped weights (safetensors + manifest entry; `python tools/model_card.py`
then regenerates the model card)."""

from __future__ import annotations

import copy
import os
import re
from datetime import date
from pathlib import Path

from dpexplorer.codec.config import build_model, codec_config
from dpexplorer.hub.files import save_weights
from dpexplorer.hub.manifest import model_name
from dpexplorer.training.common import conv_kernels, load_checkpoint, training_record

# Convolution kernels of the four transforms go to float16 (halves the file; measured effect on
# Kodak PSNR is in the model card). Entropy-model parameters, CDF tables and GDN stay float32.
_FP16_KEY = re.compile(r"^(g_a|g_s|h_a|h_s)\.\d+\.weight$")


def fp16_check(model_fp32, codec_fp16, images: list[Path]) -> dict:
    """Kodak-style check that float16 kernels are lossless enough: PSNR and bpp, fp32 vs shipped."""
    from dpexplorer.codec.codec import Codec, state_fingerprint
    from dpexplorer.io.images import load_image
    from dpexplorer.metrics import image as metrics

    ref = Codec(model_fp32, codec_fp16.cfg, state_fingerprint(model_fp32.state_dict()), "fp32 checkpoint")
    dpsnr, dbpp = [], []
    for path in images:
        img = load_image(path)
        a, b = ref.encode(img), codec_fp16.encode(img)
        dpsnr.append(metrics.psnr(img, codec_fp16.decode(b).x_hat) - metrics.psnr(img, ref.decode(a).x_hat))
        dbpp.append(metrics.bpp(len(b) - len(a), *img.shape[:2]))
    return {"images": [p.name for p in images], "mean_delta_psnr_db": round(sum(dpsnr) / len(dpsnr), 4),
            "mean_delta_bpp": round(sum(dbpp) / len(dbpp), 5)}


def codec_training_state(path: str | Path) -> dict:
    """A codec training checkpoint, or a burst's compact weights (`codec-burst-q*.safetensors`: float16 kernels,
    the checkpoint's step, wall time and config in the metadata), as the same dict."""
    path = Path(path).expanduser()
    if path.suffix != ".safetensors":
        return load_checkpoint(path)
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        meta = f.metadata() or {}
        model = {k: (t.float() if t.is_floating_point() else t) for k in f.keys() for t in [f.get_tensor(k)]}
    missing = {"step", "wall_s", "arch", "quality", "N", "M"} - set(meta)
    if missing:
        raise ValueError(f"{path.name} is not a burst's codec weights (metadata lacks {sorted(missing)})")
    return {"model": model, "step": int(meta["step"]), "wall_s": float(meta["wall_s"]), "arch": meta["arch"],
            "quality": int(meta["quality"]), "N": int(meta["N"]), "M": int(meta["M"]), "data": meta.get("data", "")}


def export_codec(checkpoint: str | Path, notes: str = "", directory: Path | None = None,
                 check_images: list[Path] | None = None) -> dict:
    state = codec_training_state(checkpoint)
    cfg = codec_config(state["arch"], int(state["quality"]), (int(state["N"]), int(state["M"])))
    model = build_model(cfg)
    model.load_state_dict(state["model"])
    model.update(force=True)  # build the CDF tables the range coder uses
    meta = {
        "kind": "codec", "arch": cfg.arch, "quality": cfg.quality, "lambda": cfg.lmbda, "N": cfg.N, "M": cfg.M,
        "exported": date.today().isoformat(),
        "training": {"data": state.get("data", ""), "steps": int(state["step"]),
                     "wall_hours": round(float(state["wall_s"]) / 3600, 3), "notes": notes},
    }
    name = model_name("codec", cfg.arch, cfg.quality)
    entry = save_weights(model.state_dict(), name, meta, fp16=lambda k: bool(_FP16_KEY.match(k)),
                         directory=directory)
    if check_images:
        from dpexplorer.hub.loading import load_codec
        from dpexplorer.hub.manifest import load_manifest, save_manifest

        shipped = load_codec(cfg.quality, cfg.arch, directory)
        entry["fp16_check"] = fp16_check(model.eval(), shipped, check_images)
        manifest = load_manifest(directory)
        manifest["models"][name] = entry
        save_manifest(manifest, directory)
    return entry  # the model card: python tools/model_card.py


def export_synthesis(run_dir: str | Path, notes: str = "", directory: Path | None = None, *,
                     snapshot: int | None = None) -> dict:
    """A perceptual synthesis run (training/synthesis.py) → `synthesis-{arch}-q{q}.safetensors` + entry: its
    latest θ₁, or the one it kept at step `snapshot` (`theta1-{step}.pt`, `--snapshot-every-s`)."""
    from dpexplorer.hub.loading import load_codec

    run = Path(run_dir).expanduser()
    state = load_checkpoint(run / "last.pt")
    theta1 = state["g_s1"]
    if snapshot is not None:
        path = run / f"theta1-{snapshot}.pt"
        if not path.exists():
            kept = sorted(int(p.stem.split("-")[1]) for p in run.glob("theta1-*.pt"))
            raise ValueError(f"{run.name} kept no θ₁ at step {snapshot} (it has {kept})")
        snap = load_checkpoint(path)
        # snapshots written before they carried their wall time: the run's, in proportion to the steps
        wall = snap.get("wall_s", state["wall_s"] * snap["step"] / max(1, state["step"]))
        theta1, state = snap["g_s"], {**state, "step": snap["step"], "wall_s": wall}
    cfg = state["config"]
    codec = load_codec(int(cfg["quality"]), cfg.get("arch"), directory)
    return _save_theta1(theta1, codec, state, {**training_record(state, notes), **_earlier_theta1(cfg, directory)},
                        directory=directory)


def _earlier_theta1(cfg: dict, directory: Path | None) -> dict:
    """A run fine-tuned from the shipped θ₁'s file (`init_from`): that θ₁'s own training record, kept as
    `earlier`, so the manifest still says how the weights began (e.g. a GPU burst)."""
    from dpexplorer.errors import WeightsError
    from dpexplorer.hub.files import sha256_file
    from dpexplorer.hub.manifest import find_entry

    start = Path(os.path.expanduser(cfg.get("init_from") or ""))
    if start.suffix != ".safetensors" or not start.exists():
        return {}
    try:
        _, shipped = find_entry("synthesis", cfg.get("arch"), int(cfg["quality"]), directory)
    except WeightsError:  # no shipped θ₁ of this quality: nothing to keep
        return {}
    if shipped["sha256"] != sha256_file(start):
        return {}
    return {"earlier": {"sha256": shipped["sha256"], **shipped.get("training", {})}}


def export_synthesis_bundle(bundle: str | Path, blend: dict[str, float], notes: str = "",
                            directory: Path | None = None) -> dict:
    """θ₁ from a synthesis burst's bundle (`burst synthesis`: one file per quality, every run's θ under a
    prefix, their records in the metadata): one arm (`{"A": 1}`), or a weighted average of arms trained
    from the same start (`{"A": 0.5, "B": 0.5}`, a "model soup"; weights sum to 1)."""
    import json

    from safetensors import safe_open

    from dpexplorer.hub.loading import load_codec

    if not blend or abs(sum(blend.values()) - 1) > 1e-6 or min(blend.values()) < 0:
        raise ValueError(f"blend weights must be ≥ 0 and sum to 1, got {blend}")
    with safe_open(str(Path(bundle).expanduser()), "pt") as f:
        runs = json.loads((f.metadata() or {}).get("runs", "{}"))
        if missing := [arm for arm in blend if arm not in runs]:
            raise ValueError(f"{bundle} holds no run record for {missing} (it has {sorted(runs)})")
        theta = {}
        for key in f.keys():
            arm, _, name = key.partition("/")
            if arm in blend:
                theta[name] = theta.get(name, 0) + blend[arm] * f.get_tensor(key).float()
    first = runs[next(iter(blend))]
    codec = load_codec(int(first["config"]["quality"]), first["config"].get("arch"), directory)
    if len(blend) == 1:
        training = training_record(first, notes)
    else:
        training = {"data": first["config"]["data"], "steps": " / ".join(str(runs[a]["step"]) for a in blend),
                    "wall_hours": round(sum(runs[a]["wall_s"] for a in blend) / 3600, 3), "blend": blend,
                    "runs": {a: {k: v for k, v in training_record(runs[a]).items() if k != "notes"} for a in blend},
                    "notes": notes}
    return _save_theta1(theta, codec, first, training, directory=directory)


def _save_theta1(theta1: dict, codec, keys: dict, training: dict, *, directory: Path | None) -> dict:
    """θ₁ only (θ₀ is the codec's own g_s); kernels in float16 like the codec's, GDN parameters float32.
    The entry is keyed on the latent model it was trained on (`keys`: a checkpoint's SHA-256s)."""
    if not codec.fits(keys):
        raise ValueError(f"θ₁ was trained on codec {keys['codec_sha256'][:12]}…, whose ŷ is not "
                         f"the shipped {codec.weights_sha256[:12]}…'s")
    meta = {
        "kind": "synthesis", "arch": codec.cfg.arch, "quality": codec.cfg.quality,
        "recipe": f"recipes/synthesis-q{codec.cfg.quality}.toml",
        "codec_sha256": keys["codec_sha256"], "latent_sha256": codec.latent_sha256,
        "exported": date.today().isoformat(), "training": training,
    }
    name = model_name("synthesis", codec.cfg.arch, codec.cfg.quality)
    return save_weights(theta1, name, meta, fp16=conv_kernels(theta1), directory=directory)


def export_refit_run(run_dir: str | Path, notes: str = "", directory: Path | None = None) -> dict:
    """`dpexplorer train export --kind refit RUN_DIR`: a synthesis run trained with MSE alone, as the plain
    decoder; or a synthesis burst's bundle (`synthesis-burst-q*.safetensors`), whose `refit/` run it takes."""
    import json

    from safetensors import safe_open

    from dpexplorer.hub.loading import load_codec

    run = Path(run_dir).expanduser()
    if run.suffix == ".safetensors":
        with safe_open(str(run), "pt") as f:
            state = json.loads((f.metadata() or {}).get("runs", "{}")).get("refit")
            theta = {k.partition("/")[2]: f.get_tensor(k).float() for k in f.keys() if k.startswith("refit/")}
        if state is None or not theta:
            raise ValueError(f"{run.name} holds no refit run")
    else:
        state, theta = load_checkpoint(run / "last.pt"), run / "theta1.pt"
    quality = int(state["config"]["quality"])
    if not load_codec(quality, None, directory).fits(state):
        raise ValueError(f"the refit in {run.name} was trained on another codec's ŷ than weights/ q{quality}")
    return export_plain_refit(theta, quality, training_record(state, notes), directory)


def export_plain_refit(theta: str | Path | dict, quality: int, training: dict, directory: Path | None = None) -> dict:
    """The shipped codec of `quality` with its g_s replaced by `theta`: the plain decoder refit to the
    rounded ŷ (a `training.synthesis` run with MSE alone; docs/synthesis.md, "PSNR monotonicity").

    g_a, the hyperprior and the entropy model stay bit-identical (checked: `latent_sha256` is unchanged), so
    bitstreams and the modules keyed on ŷ stay valid; the entry lists the replaced file's `.dpx` header id
    (`earlier_weights_ids`), so files written with it still decode. `training`: steps, wall time and
    settings of the refit, recorded under `plain_refit`."""
    from safetensors import safe_open

    from dpexplorer.codec.codec import latent_fingerprint
    from dpexplorer.hub.loading import load_codec
    from dpexplorer.hub.manifest import find_entry, weights_dir
    from dpexplorer.training.synthesis import load_theta1

    codec = load_codec(quality, None, directory)
    name, entry = find_entry("codec", codec.cfg.arch, quality, directory)
    model = copy.deepcopy(codec.model)
    # GDN's reparametrisation constants are not in every state dict (they are rebuilt from the codec's own)
    missing, unexpected = model.g_s.load_state_dict(theta if isinstance(theta, dict) else load_theta1(theta),
                                                    strict=False)
    if unexpected or any("_reparam." not in key for key in missing):
        raise ValueError(f"{theta} is not a g_s of {codec.name}: missing {missing[:3]}, unexpected {unexpected[:3]}")
    state = model.state_dict()
    if latent_fingerprint(state) != codec.latent_sha256:
        raise AssertionError("replacing g_s changed the latent model")
    with safe_open(str((directory or weights_dir()) / entry["file"]), "pt") as f:  # store as the file did
        half = {k for k in f.keys() if f.get_slice(k).get_dtype() == "F16"}
    old_id = codec.weights_sha256[:16]  # the header id that files written with the replaced file carry
    earlier = [*entry.get("earlier_weights_ids", []), *([old_id] if entry.get("latent_sha256") is None else [])]
    keep = {k: v for k, v in entry.items() if k not in ("file", "sha256", "bytes", "eval", "fp16_check")}
    meta = {**keep, "latent_sha256": codec.latent_sha256, "earlier_weights_ids": earlier,
            "exported": date.today().isoformat(),
            "plain_refit": {**training, "replaced_sha256": entry["sha256"]}}
    return save_weights(state, name, meta, fp16=half.__contains__, directory=directory)
