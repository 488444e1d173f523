"""Files: atomic writes, safe image reading and writing, the bundled sample photos."""
