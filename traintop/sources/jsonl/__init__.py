"""A run of ours: ``events.jsonl`` cut into lines, decoded into blocks, cached in columns."""
