"""Test helpers: the fake hub, the llama.cpp oracle and upstream converter, shared fixtures, the tools the suite needs."""
