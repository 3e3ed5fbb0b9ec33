"""The plan as a Ray Data source: one read task per plan part, one block per planned file.

Why not ``ray.data.read_parquet``: its file listing is a task that needs a whole CPU,
and with one worker per core holding every CPU of the cluster it would never be
scheduled (the job hangs, measured with Ray 2.60 on 2 CPUs); and a block is what Ray
Data hands to one worker call, so a part of 4096 rows would all go to one worker. Here
the driver lists the parts (a few files per million inputs), each read task asks for no
CPU (even 0.01 CPU is more than is free when the workers hold every core: that hung as
well), and every row is its own block, so files spread over the workers one
by one. Imported only by the Ray engine (it imports Ray).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from ray.data.block import BlockMetadata
from ray.data.datasource import Datasource, ReadTask

READ_CPUS = 0
"""What a read task asks the scheduler for: nothing (reading a plan part takes milliseconds)."""


def _rows(part: str) -> Iterator[pa.Table]:
    table = pq.read_table(part)
    for index in range(table.num_rows):
        yield table.slice(index, 1)


class PlanSource(Datasource):
    """The Parquet parts of a batch plan (``path``, ``stem``), read part by part, one row per block."""

    def __init__(self, plan: Path) -> None:
        self.parts = sorted(str(p) for p in Path(plan).glob("part-*.parquet"))

    def estimate_inmemory_data_size(self) -> int | None:
        return None

    def get_read_tasks(
        self, parallelism: int, per_task_row_limit: int | None = None, data_context=None
    ) -> list[ReadTask]:
        tasks = []
        for part in self.parts:
            metadata = BlockMetadata(
                num_rows=pq.ParquetFile(part).metadata.num_rows, size_bytes=None, exec_stats=None, input_files=(part,)
            )
            tasks.append(ReadTask(lambda part=part: _rows(part), metadata))
        return tasks
