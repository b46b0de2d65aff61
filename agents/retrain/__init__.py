"""The closed loop: retrain trigger, training worker and its training data."""
