"""Widgets of the run screen, one area per module."""
