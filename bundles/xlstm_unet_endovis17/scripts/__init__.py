# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""Command-line tools of the xlstm_unet_endovis17 bundle: data preparation and the synthetic demo set."""
