"""Block-major row order: the rows of a (T, B) batch regrouped by stream block.

The model keeps every per-row array (embeddings, input projections, hidden states, logits and
their gradients) as (N, F) with N = T*B rows in block-major order: block k (streams [b0, b1),
see charlm.nn.stack.stream_blocks) owns the rows [T*b0, T*b1), time-major inside the block. So
a block's rows are one contiguous (T, Bk, F) array, which its own loops and products read in
place, and the products over all rows (weight gradients, decoder) read one (N, F) array.
With one block, block-major is time-major: nothing is copied.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class BlockLayout:
    steps: int  # T
    bounds: tuple[tuple[int, int], ...]  # the stream blocks [(b0, b1), ...], covering range(B)

    @property
    def batch(self) -> int:
        return self.bounds[-1][1]

    @property
    def rows(self) -> int:
        return self.steps * self.batch

    def __len__(self) -> int:
        return len(self.bounds)

    def row_range(self, block: int) -> tuple[int, int]:
        """Rows [r0, r1) of block `block`."""
        b0, b1 = self.bounds[block]
        return self.steps * b0, self.steps * b1

    def step_rows(self, block: int, a: int, b: int) -> slice:
        """The rows of steps [a, b) of block `block`."""
        b0, b1 = self.bounds[block]
        r0 = self.steps * b0
        return slice(r0 + a * (b1 - b0), r0 + b * (b1 - b0))

    def view(self, rows: np.ndarray, block: int) -> np.ndarray:
        """Block `block` of a block-major (N, F...) array as a (T, Bk, F...) view."""
        r0, r1 = self.row_range(block)
        b0, b1 = self.bounds[block]
        return rows[r0:r1].reshape(self.steps, b1 - b0, *rows.shape[1:])

    def to_blocks(self, a: np.ndarray) -> np.ndarray:
        """(T, B, F...) -> block-major (N, F...), C-contiguous (a copy unless one block)."""
        if len(self.bounds) == 1:
            return np.ascontiguousarray(a).reshape(self.rows, *a.shape[2:])
        return np.concatenate([np.ascontiguousarray(a[:, b0:b1]).reshape(-1, *a.shape[2:])
                               for b0, b1 in self.bounds])

    def from_blocks(self, rows: np.ndarray) -> np.ndarray:
        """Block-major (N, F...) -> (T, B, F...)."""
        if len(self.bounds) == 1:
            return rows.reshape(self.steps, self.batch, *rows.shape[1:])
        return np.concatenate([self.view(rows, k) for k in range(len(self.bounds))], axis=1)
