"""`python -m dshub.cli` runs the console entry point."""
from dshub.cli import main

main()
