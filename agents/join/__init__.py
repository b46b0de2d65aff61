"""The join: predictions + labels -> exactly one scored pair per labeled prediction."""
