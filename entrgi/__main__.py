import sys

from entrgi.run import CONF_DIR, check_moved_keys, main
from entrgi.validation import preflight

check_moved_keys(sys.argv[1:])
preflight(sys.argv[1:], "config", "run", CONF_DIR)
main()
