"""Manifests the demo applies (package data)."""
