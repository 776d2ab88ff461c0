"""Command-line programs on top of the library (``traintop ctl``, ``traintop runs``): none lives in protocol/."""
