"""charlm: train, sample and score recurrent language models on the CPU."""

import os

# Set before SciPy's OpenBLAS loads (charlm.kernels.threads loads it when training or scoring
# first needs it; every product of charlm goes through it): OpenBLAS reads this once, at load.
# After each product on several threads, OpenBLAS's helper threads spin for 2^28 cycles (about
# 0.1 s) before they sleep. charlm alternates such products with its own threads
# (charlm/stack.py runs the layers' time loops one per core), and a spinning helper takes the
# core that the second layer runs on. 4, the least OpenBLAS accepts: 2^4 cycles, the helpers
# sleep at once. A 2x256 GRU's training step (batch 64 x 100) ran 1.3x faster, the 2x400 PTB
# LSTM's 1.09-1.21x (benchmarks/train_step.py); the results are the same bits. A value the
# user set stays; a program that loaded SciPy before charlm keeps the spinning; child
# processes inherit the variable.
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

__version__ = "0.1.0"
