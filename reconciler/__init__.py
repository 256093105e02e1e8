"""The acceld daemon: CLI, config, work queue and state, reconcile loop, image conversion,
webhook server, scheduled scans, metrics and systemd integration."""
