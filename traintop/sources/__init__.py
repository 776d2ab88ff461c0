"""Reading runs, whatever wrote them: ``open_run`` (``sources.source``) is the one door.

``find`` decides which format a path holds and finds runs under a folder; ``history`` and
``columns`` hold what was read; ``jsonl/`` reads a run of ours (lines, tail, typed decode, blocks,
columnar cache), ``tensorboard/`` anyone's event files (record framing, bulk columns, tag mapping,
audio to samples). Both build the same ``Block`` s into the same ``RunHistory``.
"""
