"""Alert delivery: Alertmanager, webhooks, silences and inhibition."""
