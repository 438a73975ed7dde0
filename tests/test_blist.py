"""The swap allocator (kernel/vm/blist.py) against a plain list of free blocks: the same first fit within a
leaf, runs contiguous, nothing handed out twice, hints that never hide free space."""

import random

import pytest
from vmgames.kernel.vm.blist import LEAF_BITS, MAX_RUN, Blist, SwapFull


class ListModel:
    """The same policy the slow way: the lowest run of `count` free blocks that stays within one leaf."""

    def __init__(self, blocks: int) -> None:
        self.free = [True] * blocks

    def alloc(self, count: int) -> int:
        for start in range(len(self.free) - count + 1):
            if start // LEAF_BITS == (start + count - 1) // LEAF_BITS and all(self.free[start:start + count]):
                self.free[start:start + count] = [False] * count
                return start
        raise SwapFull(count)

    def release(self, block: int, count: int) -> None:
        self.free[block:block + count] = [True] * count


@pytest.mark.parametrize("blocks", [1, 63, 64, 65, 1000, 16 * 64 + 5, 16 * 16 * 64 + 1])
def test_random_allocations_and_frees_agree_with_the_list(blocks):
    rng = random.Random(blocks)
    blist, model = Blist(blocks), ListModel(blocks)
    held: list[tuple[int, int]] = []
    for _ in range(3000):
        if held and rng.random() < 0.45:
            block, count = held.pop(rng.randrange(len(held)))
            blist.free(block, count)
            model.release(block, count)
        else:
            count = rng.choice([1, 1, 2, 3, 8, 16, 32, 64])
            try:
                expected = model.alloc(count)
            except SwapFull:
                with pytest.raises(SwapFull):
                    blist.alloc(count)
                continue
            assert blist.alloc(count) == expected
            held.append((expected, count))
        assert blist.free_blocks == sum(model.free)
    assert [blist.is_free(b) for b in range(blocks)] == model.free


def test_a_full_swap_refuses_and_a_freed_block_is_found_again():
    blist = Blist(200)
    assert [blist.alloc(1) for _ in range(200)] == list(range(200))
    with pytest.raises(SwapFull):
        blist.alloc(1)
    blist.free(137)
    assert blist.alloc(1) == 137


def test_a_run_skips_fragmented_space_for_a_contiguous_stretch():
    blist = Blist(4 * LEAF_BITS)
    first = [blist.alloc(1) for _ in range(LEAF_BITS)]
    for block in first[::2]:
        blist.free(block)                 # the first leaf: every other block free, no two together
    assert blist.alloc(16) == 2 * LEAF_BITS - LEAF_BITS   # the next leaf, whole
    assert blist.alloc(1) == 0            # single blocks still fill the holes


def test_fragmentation_measures_the_free_space_broken_into_runs():
    blist = Blist(128)
    assert blist.fragmentation() == 0.0 and blist.free_runs() == {128: 1}
    for _ in range(128):
        blist.alloc(1)
    for block in range(0, 128, 2):
        blist.free(block)
    assert blist.free_runs() == {1: 64}
    assert blist.fragmentation() == pytest.approx(1 - 1 / 64)


@pytest.mark.parametrize("count", [0, -1, MAX_RUN + 1])
def test_a_run_out_of_bounds_is_refused(count):
    with pytest.raises(ValueError):
        Blist(256).alloc(count)


def test_freeing_a_free_block_or_past_the_end_is_refused():
    blist = Blist(100)
    with pytest.raises(ValueError, match="free already"):
        blist.free(3)
    with pytest.raises(ValueError):
        blist.free(99, 2)
    with pytest.raises(ValueError):
        Blist(0)
