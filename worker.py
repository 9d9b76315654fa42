"""The RQ worker entry point: `python worker.py [--burst | --check]`."""

import sys

from lamplight_mail.delivery.worker import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
