"""Small files in packs (placeholder docstring)."""
