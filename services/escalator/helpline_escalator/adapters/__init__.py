"""Platform adapters: one contract (`base.py`), one module per platform, one registry."""
