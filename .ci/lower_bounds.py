"""Prints `name==version` for every requirement with a lower bound (`>=version`) in the files
given: the constraints of CI's lower-bound job."""

import re
import sys

for path in sys.argv[1:]:
  with open(path) as f:
    for line in f:
      requirement = line.split('#', 1)[0].strip()
      match = re.match(r'^([A-Za-z0-9_.\-]+)(\[[^\]]*\])?\s*(.*)$', requirement)
      if not requirement or not match:
        continue
      lower = re.search(r'>=\s*([0-9][^,\s;]*)', match.group(3))
      if lower:
        print(f'{match.group(1)}=={lower.group(1)}')
