"""Files: the model file (safetensors), training states, the files a run writes."""
