"""Recipes that chain the stages: the demo, and the one train → bundle recipe the demo, the tests and the
benchmarks share."""
