"""outer_loop."""
