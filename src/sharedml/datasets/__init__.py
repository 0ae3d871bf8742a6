"""The data layer: a party's own tables, read and validated where they live.

* :mod:`~sharedml.datasets.schema` — what a table must look like;
* :mod:`~sharedml.datasets.reader` — read a CSV/Parquet file and check it,
  every problem reported with its rows (:func:`~sharedml.datasets.reader.load_frame`);
* :mod:`~sharedml.datasets.sources` — where a job's dataset names point:
  files under ``sharedml run``, a node's registered datasets on a node.

Nothing here sends anything: job steps get a :class:`DatasetSource` through
their step context and only ever load their own party's data. The package
imports no pandas until a file is read (``sharedml --help`` stays fast).
"""

from sharedml.datasets.sources import DatasetFiles, DatasetSource

__all__ = ["DatasetFiles", "DatasetSource"]
