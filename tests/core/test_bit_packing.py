"""Bit-packed bool masks (prunecli._bits.pack/unpack): 1 bit per element, exact round trip."""

import pytest
import torch

from prunecli._bits import pack, unpack


@pytest.mark.parametrize("shape", [(3, 5), (8,), (1,), (0,), (7, 9, 3), (64, 33)])
def test_round_trip_is_exact_and_one_bit_per_element(shape):
    mask = torch.rand(shape, generator=torch.Generator().manual_seed(0)) > 0.5
    data = pack(mask)
    n = mask.numel()
    assert data.dtype == torch.uint8 and data.shape == ((n + 7) // 8,)
    back = unpack(data, shape)
    assert back.dtype == torch.bool and torch.equal(back, mask)


def test_bit_order_is_row_major_lowest_bit_first():
    mask = torch.tensor([[True, False, False, False], [False, False, False, False], [False, True, False, False]])
    assert pack(mask).tolist() == [1, 2]  # element 0 -> bit 0 of byte 0; element 9 -> bit 1 of byte 1


def test_non_contiguous_masks_pack_in_logical_order():
    mask = torch.rand(6, 10, generator=torch.Generator().manual_seed(1)) > 0.3
    assert torch.equal(unpack(pack(mask.t()), (10, 6)), mask.t())


@pytest.mark.parametrize("data, shape", [
    (torch.zeros(3, dtype=torch.uint8), (5, 5)),
    (torch.zeros(4, dtype=torch.int32), (5, 5)),
    (torch.zeros(2, 2, dtype=torch.uint8), (5, 5)),
])
def test_wrong_byte_count_dtype_or_rank_raises(data, shape):
    with pytest.raises(ValueError, match="packed bytes"):
        unpack(data, shape)
