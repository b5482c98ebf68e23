"""inner_loop: one-shot adaptation (demonstration -> learning signals -> e-prop update -> test)."""
