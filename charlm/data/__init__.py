"""Text to token ids and token ids to batches: the tokenizer, the corpus reader, BPTT windows."""
