"""Training checkpoint → shipped weights (safetensors + manifest entry)."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

from dpexplorer.training.common import load_checkpoint
from dpexplorer.weights import model_name, save_weights, write_model_card
from dpexplorer.zoo import build_model, codec_config

# Convolution kernels of the four transforms go to float16 (halves the file; measured effect on
# Kodak PSNR is in the model card). Entropy-model parameters, CDF tables and GDN stay float32.
_FP16_KEY = re.compile(r"^(g_a|g_s|h_a|h_s)\.\d+\.weight$")


def export_codec(checkpoint: str | Path, notes: str = "", directory: Path | None = None) -> dict:
    state = load_checkpoint(Path(checkpoint).expanduser())
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
    entry = save_weights(model.state_dict(), model_name("codec", cfg.arch, cfg.quality), meta,
                         fp16=lambda k: bool(_FP16_KEY.match(k)), directory=directory)
    write_model_card(directory)
    return entry
