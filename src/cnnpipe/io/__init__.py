"""Files: atomic writes, hashing and verified downloads, safe image reading and writing, the bundled sample photos."""
