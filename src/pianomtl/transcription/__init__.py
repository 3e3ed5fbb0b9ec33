"""From audio to notes: the pipeline, network runner, model files and decoders (no training code)."""
