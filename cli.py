"""floodcache command line: embed SAM once, fine-tune its mask decoder from the cache.

    python cli.py --help

The commands live in floodcache/commands; this file only starts them.
"""

from floodcache.commands import main

if __name__ == "__main__":
    main()
