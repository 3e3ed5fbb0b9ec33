"""Batch transcription of an archive: ``pianomtl batch SOURCE -o OUT``, on Ray Data or in one process.

A job is three steps, each with bounded memory however many files it has:

1. :mod:`~pianomtl.batch.plan` streams the source (a folder, a glob, or a CSV/Parquet/text
   manifest) into Parquet plan parts under ``OUT/.batch/plan`` — input path and output
   stem per row, duplicate stems resolved through an on-disk index, never a Python list
   of all files;
2. :mod:`~pianomtl.batch.work` transcribes each planned file in a stateful worker (one
   ONNX session with one intra-op thread per worker, one worker per core) and writes its
   outputs and then its record (``OUT/.batch/records/<stem>.json``: status, error,
   seconds, model version, input hash, notes and pedal), each atomically; the record is
   the "done" mark a restarted job checks (with the input's hash) before doing a file again;
3. :mod:`~pianomtl.batch.tables` compiles the records, in plan order and in row groups,
   into ``OUT/notes.parquet`` (one row per note or pedal press) and ``OUT/manifest.parquet``
   (one row per file).

:mod:`~pianomtl.batch.run` drives the steps: Ray Data's actor pool (``engine="ray"``,
local instance by default, ``address`` / ``RAY_ADDRESS`` for a cluster) or a plain loop in
this process (``engine="local"``: the one-core baseline of ``benchmarks/batch.py`` and the
fast tests). Ray is the optional ``[cluster]`` extra and is imported only by the Ray engine.
"""
