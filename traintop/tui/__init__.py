"""The terminal app (``traintop watch``). Imports no torch, ever; knows protocol and health only."""
