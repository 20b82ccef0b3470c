"""The `leadbridge` command line: run the product, its processes, and admin chores."""
