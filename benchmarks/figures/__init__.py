"""One module per benchmark figure; each has `run(ctx) -> list[Row]` and `NOTES`."""
