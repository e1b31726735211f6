# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""Command-line tools of the xlstm_unet_cells bundle: data preparation, the synthetic demo set, a memory check."""
