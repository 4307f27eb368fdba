"""Stage 1, data: datasets on disk (FMA, the demo, generic collections) and album-artist bags."""
