"""Streamed outputs on the gateway's side: synchronous calls that stream (`calls`)."""
