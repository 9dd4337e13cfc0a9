"""Scripts that run inside the recipe-validator venv (.ci/recipe-validators.sh), each checking a batch of
generated commands with an engine's own argument parser. They import only the stdlib and the engine."""
