"""Test and benchmark support: an oracle teacher that knows the truth of every completion it
writes (oracle.py) and builders of real-shaped source files (shapes.py)."""
