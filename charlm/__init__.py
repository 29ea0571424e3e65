"""charlm: train, sample and score recurrent language models on the CPU.

Where each idea lives:

- charlm.cli: the commands (`charlm train/sample/score/info/plot/explore`); charlm.api: the
  Python API they call; charlm.config: every option's default, choices and range.
- charlm.data: text to token ids (tokenizer: char/word, UNK and EOS), the streaming corpus
  reader, and the cutting of ids into truncated-BPTT windows (batches).
- charlm.nn: the network. model: embedding -> stacked recurrent layers (weights shared across
  time) -> decoder; recurrent: one layer forward and backward through time (BPTT); kernels:
  one Numba file per cell (lstm.py, gru.py, rnn.py, leaky.py), the step product (packed.py)
  and the fused softmax with cross-entropy (softmax.py); cells: the registry of cell types;
  stack: the threads over stream blocks.
- charlm.train: the loop (trainer), gradient clipping by norm or element-wise and the
  optimizers (optim), schedules, validation loss (evaluate), the run state
  that --resume restores (state), the model sized to a --time budget (budget) and when such
  a run stops (time_budget), MPI (distributed).
- charlm.sample: sampling one token at a time fed back as input, with temperature, top-k,
  top-p; charlm.score: log-probabilities and perplexity of text; charlm.metrics: perplexity
  and bits per character from a loss.
- charlm.io: the model file (safetensors + JSON header) and training states.
- charlm.views: what a model learned and how it trained: explorer page, heat maps, curves.
"""

from charlm import process

process.configure()  # OpenBLAS's idle threads and glibc's malloc thresholds (charlm.process)

__version__ = "0.1.0"
