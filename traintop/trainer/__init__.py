"""The headless trainer: recipes over coqui-tts, instrumentation (``Run``), samples, system stats.

Importing this package is light; torch and coqui load only when training starts.
"""
