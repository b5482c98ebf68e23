"""inner_loop."""
