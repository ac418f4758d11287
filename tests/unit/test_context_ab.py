"""tools/context_ab.py: every arm's passes code to real bytes that decode back to the encoder's ŷ, and
step 0 (the zero-initialised last layer) is today's coder exactly."""

import numpy as np
import pytest
import torch

from tests.helpers import load_tool

PASSES = {"control": 1, "checkerboard": 2, "checkerboard-scales": 2, "channel": 4, "channel-control": 4}
ARMS = list(PASSES)


@pytest.fixture(scope="module")
def tool():
    return load_tool("context_ab")


@pytest.mark.parametrize("kind", ARMS)
def test_step_zero_is_todays_coder(tool, tiny_codec, photo, kind):
    codec = tiny_codec
    arm = tool.ContextArm(kind, codec.cfg.M).eval()
    today, mine = tool.code_image(codec, None, photo, check=False), tool.code_image(codec, arm, photo, check=True)
    assert mine["psnr"] == today["psnr"]  # the same ŷ
    assert abs(mine["bytes"] - today["bytes"]) <= 8 * (PASSES[kind] - 1)  # one rANS flush per extra string


@pytest.mark.parametrize("kind", ARMS)
def test_a_trained_arm_decodes_back_to_the_encoders_latent(tool, tiny_codec, photo, kind):
    codec = tiny_codec
    torch.manual_seed(1)
    arm = tool.ContextArm(kind, codec.cfg.M)
    for module in arm.modules():  # as if trained: every last layer moved off zero
        if isinstance(module, torch.nn.Conv2d) and not module.weight.abs().sum():
            torch.nn.init.normal_(module.weight, std=0.02)
    row = tool.code_image(codec, arm.eval(), photo, check=True)  # raises if the receiver's ŷ differs
    assert row["bytes"] > 0 and np.isfinite(row["psnr"])
    if kind == "checkerboard-scales":
        assert row["psnr"] == tool.code_image(codec, None, photo, check=False)["psnr"]  # μ kept: ŷ kept
