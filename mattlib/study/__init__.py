"""Stage 6, study: the settings object, one experiment in a few calls."""
