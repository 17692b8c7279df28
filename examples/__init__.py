"""Runnable examples referenced from README.md (each one is exercised by a test)."""
