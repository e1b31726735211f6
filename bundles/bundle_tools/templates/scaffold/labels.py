# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""The bundle's label names: value i + 1 <-> LABELS[i] (0 is background), as bundle.yaml's class_names lists them."""

LABELS = __LABELS__  # TODO: the dataset's names, in its numbering
