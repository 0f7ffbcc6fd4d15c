"""Key/value cache with one row per active sequence, shared by all sequences of a batch.

Each layer keeps one tensor [rows, kv_heads, capacity, head_dim] per keys and values. Sequence r
occupies row r from position 0 (left-aligned); shorter rows are masked in attention. A decode
step writes each row's new key at that row's own length, so sequences that started at different
times share the batch without any re-padding or re-stacking. Active rows are always 0..n-1: when
a sequence leaves, the last row is copied into its place (one small copy per layer), so a step
reads contiguous views and never gathers. Capacity grows by doubling; nothing is re-allocated on
the hot path.
"""

import torch


class SlotKVCache:
    def __init__(
        self,
        layers: int,
        kv_heads: int,
        head_dim: int,
        *,
        dtype: torch.dtype,
        device: torch.device,
        max_length: int,
        block: int = 256,
    ) -> None:
        self.layers, self.kv_heads, self.head_dim = layers, kv_heads, head_dim
        self.dtype, self.device = dtype, device
        self.max_length = max_length
        self.block = block
        self.keys: list[torch.Tensor] = []
        self.values: list[torch.Tensor] = []
        self.row_capacity = 0
        self.capacity = 0

    def reserve(self, rows: int, length: int) -> None:
        """Make room for `rows` rows of `length` positions, keeping what is stored."""
        if rows <= self.row_capacity and length <= self.capacity:
            return
        new_rows = max(rows, self.row_capacity)
        new_capacity = self.capacity
        if length > self.capacity:
            rounded = -(-length // self.block) * self.block
            # Doubling keeps the number of re-allocations logarithmic in the output length.
            new_capacity = min(max(rounded, 2 * self.capacity), max(self.max_length, length))
        shape = (new_rows, self.kv_heads, new_capacity, self.head_dim)
        for store in (self.keys, self.values):
            for index in range(self.layers):
                fresh = torch.zeros(shape, dtype=self.dtype, device=self.device)
                if store and self.capacity:
                    old = store[index]
                    fresh[: old.shape[0], :, : self.capacity] = old
                if len(store) < self.layers:
                    store.append(fresh)
                else:
                    store[index] = fresh
        self.row_capacity, self.capacity = new_rows, new_capacity

    def move_row(self, source: int, target: int, length: int) -> None:
        """Copy the first `length` positions of row `source` into row `target`."""
        for store in (self.keys, self.values):
            for tensor in store:
                tensor[target, :, :length] = tensor[source, :, :length]

    @property
    def nbytes(self) -> int:
        return sum(t.nbytes for t in self.keys) + sum(t.nbytes for t in self.values)

    def release(self) -> None:
        """Free all storage (the next reserve starts from scratch)."""
        self.keys, self.values = [], []
        self.row_capacity = self.capacity = 0
