"""The `ldm-course` command: main.py (the subcommands), args.py (options), models.py (loading)."""
