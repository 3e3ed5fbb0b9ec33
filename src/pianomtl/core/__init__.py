"""The paper's definitions: audio input, features, MIDI, targets and framewise metrics."""
