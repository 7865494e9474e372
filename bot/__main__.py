"""`python -m bot` runs the pointsbot command line."""

from bot.cli import main

main()
