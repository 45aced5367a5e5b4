"""``python -m hwpareto.cli``."""

from hwpareto.cli import main

main()
