"""charlm: train, sample and score recurrent language models on the CPU."""

import os

# Set before SciPy's OpenBLAS loads (every product of charlm goes through it; see
# charlm.kernels.linalg): OpenBLAS reads this once, at load. After a product on several
# threads, OpenBLAS's helper threads spin for 2^28 cycles before they sleep, on the cores that
# charlm's own threads (charlm.stack) need next; 4, the least OpenBLAS accepts, makes them
# sleep at once. The results are the same bits. A value the user set stays; a program that
# loaded SciPy before charlm keeps the spinning; child processes inherit the variable.
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

__version__ = "0.1.0"
