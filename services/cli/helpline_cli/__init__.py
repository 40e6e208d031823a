"""The `helpline` command: run services, set up topics and tables, dev mode, publish, bench."""
