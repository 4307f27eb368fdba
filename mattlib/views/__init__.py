"""Stage 7, views: the report, plots, the per-bag attention explorer."""
