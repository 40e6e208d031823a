"""Casework: the read model of every case, the practitioners' queue, actions and pages."""
