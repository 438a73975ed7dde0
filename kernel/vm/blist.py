"""blist: the swap allocator, a bitmap of blocks arranged in a radix tree.

Dillon's FreeBSD 4 swap rewrite replaced a linear "list of holes" with a
bitmap of swap blocks in a radix tree whose nodes hint at the largest run of
free blocks below them, so that an allocation skips whole subtrees that
cannot hold it: allocating and freeing cost O(log n), nearly O(1).  The tree
is allocated whole when swap is configured, so that allocating swap (done
when memory is short) never allocates memory itself, and a run of blocks
can be taken at once, which keeps a cluster of pages contiguous on swap.

Leaves are 64-bit words, a bit per block, set when the block is free; meta
nodes have 16 children.  A node's `hint` is an upper bound on the longest
free run inside one of its leaves: an allocation of `count` blocks does not
enter a node whose hint is below `count`, and lowers the hint of a node it
searched in vain to `count - 1`.  Freeing raises the hints on the path again.
Runs never straddle two leaves (at most 64 blocks), as in FreeBSD's first
blist.
"""

from __future__ import annotations

from collections import Counter

LEAF_BITS = 64        # blocks per leaf (FreeBSD's BLIST_BMAP_RADIX)
META_RADIX = 16       # children per meta node (BLIST_META_RADIX)
MAX_RUN = LEAF_BITS   # the longest run one allocation may ask for
_FULL = (1 << LEAF_BITS) - 1


class SwapFull(Exception):
    """No run of free blocks as long as the one asked for."""


class Blist:
    """A preallocated radix tree of free-block bitmaps over `blocks` blocks, numbered from 0."""

    def __init__(self, blocks: int) -> None:
        if blocks <= 0:
            raise ValueError("a blist needs at least one block")
        self.blocks = blocks
        self.free_blocks = blocks
        leaves = -(-blocks // LEAF_BITS)
        self.leaves = [_FULL] * leaves
        last = blocks - (leaves - 1) * LEAF_BITS
        self.leaves[-1] = (1 << last) - 1          # blocks past the end are never free
        # hints[0] is per leaf; hints[k] per meta node of level k; the last level has the root alone.
        self.hints: list[list[int]] = [[LEAF_BITS] * leaves]
        while len(self.hints[-1]) > 1:
            self.hints.append([LEAF_BITS] * -(-len(self.hints[-1]) // META_RADIX))
        if len(self.hints) == 1:
            self.hints.append([LEAF_BITS])           # a root above a single leaf

    def alloc(self, count: int) -> int:
        """The first block of `count` contiguous free blocks, now allocated; SwapFull if there is no such run."""
        if not 1 <= count <= MAX_RUN:
            raise ValueError(f"a run is 1 to {MAX_RUN} blocks, not {count}")
        block = self._search(len(self.hints) - 1, 0, count)
        if block < 0:
            raise SwapFull(count)
        self.free_blocks -= count
        return block

    def _search(self, level: int, index: int, count: int) -> int:
        """Search node `index` of `level` for a run of `count`; -1 (and a lower hint) if it has none."""
        hints = self.hints[level]
        if hints[index] < count:
            return -1
        if level == 0:
            block = self._alloc_in_leaf(index, count)
        else:
            block = -1
            first = index * META_RADIX
            for child in range(first, min(first + META_RADIX, len(self.hints[level - 1]))):
                block = self._search(level - 1, child, count)
                if block >= 0:
                    break
        if block < 0:
            hints[index] = count - 1
        return block

    def _alloc_in_leaf(self, leaf: int, count: int) -> int:
        bits = self.leaves[leaf]
        starts = bits                    # bit i stays set iff blocks i .. i+count-1 are all free
        for _ in range(count - 1):
            starts &= starts >> 1
        if not starts:
            return -1
        first = (starts & -starts).bit_length() - 1
        self.leaves[leaf] = bits & ~(((1 << count) - 1) << first)
        return leaf * LEAF_BITS + first

    def free(self, block: int, count: int = 1) -> None:
        """Give back `count` blocks from `block` (a run `alloc` returned, or part of one)."""
        leaf, first = divmod(block, LEAF_BITS)
        if count < 1 or first + count > LEAF_BITS or block + count > self.blocks:
            raise ValueError(f"blocks {block}..{block + count - 1} are not a run within one leaf")
        mask = ((1 << count) - 1) << first
        if self.leaves[leaf] & mask:
            raise ValueError(f"freeing swap blocks {block}..{block + count - 1}: some are free already")
        self.leaves[leaf] |= mask
        self.free_blocks += count
        index = leaf
        for level in range(len(self.hints)):
            self.hints[level][index] = LEAF_BITS      # an upper bound again: the next search finds out
            index //= META_RADIX

    def is_free(self, block: int) -> bool:
        leaf, bit = divmod(block, LEAF_BITS)
        return bool(self.leaves[leaf] >> bit & 1)

    def free_runs(self) -> Counter[int]:
        """How many maximal runs of free blocks there are of each length (across leaves): fragmentation."""
        runs: Counter[int] = Counter()
        length = 0
        for leaf, bits in enumerate(self.leaves):
            width = min(LEAF_BITS, self.blocks - leaf * LEAF_BITS)
            if bits == (1 << width) - 1:
                length += width
                continue
            for bit in range(width):
                if bits >> bit & 1:
                    length += 1
                elif length:
                    runs[length] += 1
                    length = 0
        if length:
            runs[length] += 1
        return runs

    def fragmentation(self) -> float:
        """1 - (longest free run / free blocks): 0 when the free space is one run, near 1 when it is crumbs."""
        runs = self.free_runs()
        return 0.0 if not runs else 1 - max(runs) / self.free_blocks
