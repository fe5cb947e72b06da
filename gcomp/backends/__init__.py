"""Backends: code generators and runtimes that read a verified IR graph."""
