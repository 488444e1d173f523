"""What a person reads: captions, plots, number formatting."""
