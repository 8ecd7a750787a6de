"""Running tracker: the poller, the daemon, shared mode, metrics, webhooks, and their assembly."""
