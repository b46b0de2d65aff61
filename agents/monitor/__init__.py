"""The monitor: metrics, drift detectors and alert rules per model version."""
