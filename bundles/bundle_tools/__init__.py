# Copyright 2026 the xlstm-seg authors. Apache-2.0.
