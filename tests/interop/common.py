"""Shared helpers for grokit's interop scripts: argument parsing and a pass/fail counter that
ends with the line `N passed, M failed` (read by CI)."""
import argparse
import os
import sys


def args():
    p = argparse.ArgumentParser()
    p.add_argument("--grokit", required=True, help="path to the grokit binary")
    p.add_argument("--shared", required=True, help="path to ../shared")
    p.add_argument("--work", required=True, help="scratch directory")
    p.add_argument("--examples", default=None, help="directory with built example binaries")
    a = p.parse_args()
    os.makedirs(a.work, exist_ok=True)
    if a.examples is None:
        a.examples = os.path.join(os.path.dirname(os.path.abspath(a.grokit)), "examples")
    return a


class Checks:
    def __init__(self, name):
        self.name = name
        self.passed = 0
        self.failed = 0

    def check(self, ok, what):
        if ok:
            self.passed += 1
        else:
            self.failed += 1
            print(f"FAIL [{self.name}] {what}", flush=True)

    def finish(self):
        print(f"{self.passed} passed, {self.failed} failed")
        sys.exit(1 if self.failed or not self.passed else 0)
