"""Anyone's TensorBoard event files, read-only: record framing, bulk columns, tag mapping, audio."""
