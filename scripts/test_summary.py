#!/usr/bin/python3
"""Prints one closing line, 'N passed, M failed', over the meson test logs
given (build/meson-logs/testlog.json of each build), and exits non-zero if
any test failed or none ran."""
import json
import sys

passed = failed = 0
for path in sys.argv[1:]:
    with open(path) as f:
        for line in f:
            if not line.strip():
                continue
            result = json.loads(line).get("result")
            if result in ("OK", "EXPECTEDFAIL", "SKIP"):
                passed += result != "SKIP"
            else:
                failed += 1
print("%d passed, %d failed" % (passed, failed))
sys.exit(1 if failed or not passed else 0)
