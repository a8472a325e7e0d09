"""Pushing results to waiting clients: one subscriber per gateway replica hears every task's
changes and wakes its long-polls and event streams (`notifications`)."""
