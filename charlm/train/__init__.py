"""Training: the loop (truncated BPTT, clipping, optimizer), its state, schedules, MPI."""
