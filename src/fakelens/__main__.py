"""``python -m fakelens …``: the command line, as ``fakelens …``."""

from fakelens.cli.main import main

if __name__ == "__main__":
    main()
