"""The non-local block: the original's arithmetic, identity at init, any spatial size."""

import pytest
import torch

from nlflow.models.nonlocal_block import NonLocalBlock
from nlflow.models.norm import Affine3d, norm_factory

from helpers.nonlocal_reference import reference_attend


def _block(channels: int = 16, frozen: bool = False) -> NonLocalBlock:
    torch.manual_seed(0)
    return NonLocalBlock(channels, norm_factory(frozen))


def test_fused_attention_matches_the_original_step_by_step_computation():
    block = _block().eval()
    x = torch.randn(2, 16, 3, 6, 6)
    torch.testing.assert_close(block.attend(x), reference_attend(block, x), rtol=1e-5, atol=1e-6)


def test_shapes_and_inner_dimension():
    block = _block(32)
    assert block.dim_inner == 16
    assert block.theta.weight.shape == (16, 32, 1, 1, 1)
    assert block.out.weight.shape == (32, 16, 1, 1, 1)
    assert block.theta.bias is not None and block.out.bias is not None
    x = torch.randn(1, 32, 2, 7, 5)  # odd sizes: the 1x2x2 pool floors, like the original
    assert block(x).shape == x.shape


@pytest.mark.parametrize("frozen", [False, True])
def test_block_is_the_identity_at_init(frozen):
    block = _block(frozen=frozen).train()
    x = torch.randn(2, 16, 2, 4, 4)
    assert torch.equal(block(x), x)
    assert torch.count_nonzero(block.bn.weight) == 0
    assert isinstance(block.bn, Affine3d) == frozen


def test_block_changes_the_input_once_gamma_is_nonzero_and_gradients_reach_every_projection():
    block = _block().train()
    torch.nn.init.ones_(block.bn.weight)
    x = torch.randn(2, 16, 2, 4, 4)
    y = block(x)
    assert not torch.allclose(y, x)
    y.square().sum().backward()
    for name in ("theta", "phi", "g", "out"):
        grad = getattr(block, name).weight.grad
        assert grad is not None and grad.abs().sum() > 0, name


def test_attention_weights_sum_to_one_over_the_pooled_positions():
    # With g = constant per channel, softmax-weighted averages return that constant everywhere.
    block = _block().eval()
    torch.nn.init.zeros_(block.g.weight)
    torch.nn.init.constant_(block.g.bias, 3.0)
    y = block.attend(torch.randn(1, 16, 2, 4, 4))
    torch.testing.assert_close(y, torch.full_like(y, 3.0))
