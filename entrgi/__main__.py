import sys

from entrgi.run import check_moved_keys, main

check_moved_keys(sys.argv[1:])
main()
