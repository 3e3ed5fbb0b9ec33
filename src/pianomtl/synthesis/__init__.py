"""The corpus's sound: the material played (performance MIDI, procedural music), the instruments that
play it (FluidSynth SoundFonts, TiMidity, the project's sample and parametric pianos) and the rooms,
microphones and noise it is heard through. ``pianomtl synth`` renders a corpus from here; the
training data that is read back from it (feature caches, excerpt sampling) lives in :mod:`pianomtl.data`.
"""
