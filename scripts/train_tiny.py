"""Train the embedded default stack from scratch: ``python scripts/train_tiny.py --out DIR``.

The recipe lives in ``entrgi.testbed.recipe`` (also ``python -m entrgi.testbed.recipe``).
"""

from entrgi.testbed.recipe import main

if __name__ == "__main__":
    main()
