"""Long-running and one-shot services: the daemon, backfill, the HTTP intake, sd_notify."""
