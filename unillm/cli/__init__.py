"""The `unillm` command."""
