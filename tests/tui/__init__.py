"""Tests of the terminal app: pure chart maths, Pilot-driven keys, snapshots, and a real trainer."""
