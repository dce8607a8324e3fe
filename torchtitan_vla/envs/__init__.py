"""Simulated environments the debug curriculum trains and evaluates on."""
